"""tfnas.optimizers: StepAdam and StepSGD update as Keras' Adam, AdamW and SGD, in fewer nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnas.optimizers import StepAdam, StepSGD

ROOT = Path(__file__).resolve().parent.parent


def _schedule() -> keras.optimizers.schedules.LearningRateSchedule:
    """The trainer's: linear warm-up, then cosine decay."""
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=6, warmup_target=0.05,
                                                  warmup_steps=2)


def _train(optimizer: keras.optimizers.Optimizer, jit_compile: bool = False,
           steps: int = 5) -> tuple[list[np.ndarray], tf.types.experimental.ConcreteFunction]:
    weights = [keras.Variable(np.random.RandomState(i).randn(5, 3).astype("float32"),
                              name=f"w{i}") for i in range(3)]

    @tf.function(jit_compile=jit_compile)
    def step(grads):
        optimizer.apply(grads, weights)

    for t in range(steps):
        step([tf.constant(np.random.RandomState(10 + t + i).randn(5, 3).astype("float32"))
              for i in range(3)])
    grads = [tf.TensorSpec((5, 3), "float32")] * 3
    return [w.numpy() for w in weights], step.get_concrete_function(grads)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_step_adam_updates_as_keras_adam(jit_compile):
    expected, _ = _train(keras.optimizers.Adam(0.01, beta_1=0.5))
    got, _ = _train(StepAdam(0.01, beta_1=0.5), jit_compile)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=0, atol=2e-6)


def test_step_adam_updates_each_variable_with_one_fused_node():
    _, keras_step = _train(keras.optimizers.Adam(0.01), steps=1)
    _, step = _train(StepAdam(0.01), steps=1)
    ops = [op.type for op in step.graph.get_operations()]
    assert ops.count("ResourceApplyAdam") == 3
    assert len(ops) < len(keras_step.graph.get_operations()) / 2


def test_step_adam_refuses_amsgrad():
    with pytest.raises(ValueError, match="amsgrad"):
        StepAdam(0.01, amsgrad=True)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_step_adam_with_weight_decay_updates_as_keras_adamw(jit_compile):
    """Decoupled decay on a warm-up + cosine schedule, one variable excluded by name."""
    def adamw(cls):
        optimizer = cls(_schedule(), weight_decay=0.1)
        optimizer.exclude_from_weight_decay(var_names=["w2"])
        return optimizer

    expected, _ = _train(adamw(keras.optimizers.AdamW))
    got, _ = _train(adamw(StepAdam), jit_compile)
    undecayed, _ = _train(StepAdam(_schedule()))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=0, atol=2e-6)
    assert np.abs(got[0] - undecayed[0]).max() > 1e-3  # the decay did something
    np.testing.assert_allclose(got[2], undecayed[2], rtol=0, atol=2e-6)  # excluded


def test_step_sgd_updates_as_keras_sgd_with_weight_decay():
    expected, _ = _train(keras.optimizers.SGD(_schedule(), momentum=0.9, nesterov=True,
                                              weight_decay=0.1))
    got, _ = _train(StepSGD(_schedule(), momentum=0.9, nesterov=True, weight_decay=0.1))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=0, atol=2e-6)


def test_weight_decay_reads_the_schedule_once_a_step():
    """Keras evaluates the schedule (a cond: warm-up or cosine) again for every decayed
    variable."""
    def schedules(optimizer):
        _, step = _train(optimizer, steps=1)
        return sum(op.type.endswith("If") for op in step.graph.get_operations())

    assert schedules(keras.optimizers.AdamW(_schedule(), weight_decay=0.1)) >= 4
    assert schedules(StepAdam(_schedule(), weight_decay=0.1)) == 2  # decay, update
    assert schedules(StepSGD(_schedule(), momentum=0.9, weight_decay=0.1)) == 2


MIRRORED = """
import json, sys
import numpy as np
from tfnas.run import distribute
distribute.split_cpu(2)
import keras, tensorflow as tf
from tfnas.optimizers import StepAdam
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {}
for name, cls in (("keras", keras.optimizers.AdamW), ("step", StepAdam)):
    with strategy.scope():
        weights = [keras.Variable(np.full((4,), 1.0 + i, "float32")) for i in range(2)]
        optimizer = cls(0.1, weight_decay=0.5)
        optimizer.build(weights)
    @tf.function
    def step():
        def replica():
            ctx = tf.distribute.get_replica_context()
            grads = [tf.fill((4,), tf.cast(ctx.replica_id_in_sync_group + 1, "float32"))
                     * (i + 1.0) for i in range(2)]
            optimizer.apply(grads, weights)
        strategy.run(replica)
    for _ in range(3):
        step()
    out[name] = [w.numpy().tolist() for w in weights]
print(json.dumps(out))
"""


def test_step_adam_with_weight_decay_under_mirrored_strategy_as_keras_adamw():
    """Two logical CPUs (configured before TensorFlow starts: a subprocess); each replica
    decays its copy once a step, as Keras' AdamW does."""
    import json

    done = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["step"], out["keras"], rtol=0, atol=2e-6)
    assert out["step"][0][0] != pytest.approx(1.0, abs=1e-3)
