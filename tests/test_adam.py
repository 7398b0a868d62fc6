"""StepAdam (tfnas/search/adam.py): Keras' Adam's values, one fused update node a variable."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnas.search.adam import StepAdam


def _train(optimizer: keras.optimizers.Optimizer, jit_compile: bool = False,
           steps: int = 5) -> tuple[list[np.ndarray], tf.types.experimental.ConcreteFunction]:
    weights = [keras.Variable(np.random.RandomState(i).randn(5, 3).astype("float32"))
               for i in range(3)]

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
