"""Optimizers whose per-step scalars are computed once per step, not once per variable.

Keras' Adam (Kingma & Ba 2015, Alg. 1, in the form α_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ),
w ← w − α_t·m/(√v + ε)) builds the step count, both bias corrections and α_t again for every
variable: about 42 graph nodes per variable. A search network has several times a child
network's variables (a mixed op holds every candidate's weights: about 600 on `cifar`), and
those nodes were a third of hard Gumbel's traced step, about 370 MiB of its resident memory on
this host (bench/search_step_cost.py --phases). `StepAdam` computes α_t once per step and
passes it on as the learning rate, and updates each variable with TensorFlow's fused Adam
kernel (`ResourceApplyAdam`, the same three lines as Keras' `update_step`): one graph node a
variable. The values are Keras' Adam's up to float rounding (2e-6 after five steps,
tests/test_optimizers.py); the optimizer's variables (so checkpoints) and the behaviour under
tf.distribute (each replica's component updated in `strategy.extended.update`) are Keras'.

Decoupled weight decay (Loshchilov & Hutter 2019, AdamW Alg. 2 line 12, w ← w − η_t·λ·w, as
Keras applies it before the update) is the same story: Keras evaluates the learning-rate
schedule again for every decayed variable, about 40 nodes each; `StepWeightDecay` evaluates
it once a step. A trained child of `tiny` with Keras' AdamW and a cosine schedule: 3.8k
nodes in its train step, 2.3k of them the optimizer's.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


class StepWeightDecay:
    """Mixed into a Keras optimizer: its decoupled weight decay with the learning rate read
    once a step (module docstring); the same variables decay (`exclude_from_weight_decay`)
    by the same amount."""

    def _apply_weight_decay(self, variables: list) -> None:
        if self.weight_decay is None:
            return
        import tensorflow as tf

        factor = ops.cast(self.learning_rate, "float32") * ops.cast(self.weight_decay,
                                                                    "float32")
        decayed = [v for v in variables if self._use_weight_decay(v)]

        def decay(variable: Any) -> None:
            variable.assign_sub(variable * ops.cast(factor, variable.dtype))

        def apply(distribution: Any, variables: list) -> None:
            for variable in variables:
                distribution.extended.update(
                    variable.value if isinstance(variable, keras.Variable) else variable,
                    decay, group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            apply, self._distribution_strategy, decayed)


@keras.saving.register_keras_serializable(package="tfnas")
class StepAdam(StepWeightDecay, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with α_t computed once per step and each variable updated by
    one fused kernel (module docstring); with `weight_decay` it is AdamW. amsgrad is not
    supported."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("amsgrad"):
            raise ValueError("StepAdam does not implement amsgrad")
        super().__init__(*args, **kwargs)

    def _backend_update_step(self, grads: list, trainable_variables: list,
                             learning_rate: Any) -> None:
        """Computes α_t and the fused kernel's scalars once, and hands them to every
        variable's `update_step` as its `learning_rate`."""
        import tensorflow as tf

        step = ops.cast(self.iterations + 1, "float32")
        lr = ops.cast(learning_rate, "float32")
        alpha = lr * ops.sqrt(1.0 - ops.power(ops.cast(self.beta_2, "float32"), step)) / (
            1.0 - ops.power(ops.cast(self.beta_1, "float32"), step))
        scalars = (alpha, tf.zeros(()), tf.constant(self.beta_1, "float32"),
                   tf.constant(self.beta_2, "float32"), tf.constant(self.epsilon, "float32"))
        super()._backend_update_step(grads, trainable_variables, scalars)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """One variable's update with TensorFlow's fused Adam kernel (one graph node; given
        bias-correction powers of 0 it takes α_t as its step size). `learning_rate`: the
        scalars of `_backend_update_step` (α_t, 0, β₁, β₂, ε). A sparse gradient (a
        gathered weight's) is made dense first, as Keras' Adam's arithmetic on it does."""
        import tensorflow as tf

        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        alpha, zero, beta_1, beta_2, epsilon = (
            s if s.dtype == dtype else tf.cast(s, dtype) for s in learning_rate)
        gradient = tf.convert_to_tensor(gradient)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(m), v=_handle(v), beta1_power=zero,
            beta2_power=zero, lr=alpha, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
            grad=gradient if gradient.dtype == dtype else tf.cast(gradient, dtype))


def _handle(variable: Any) -> Any:
    """The resource handle of a Keras or TensorFlow variable (inside a tf.distribute update:
    the replica's component)."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    return variable.handle


@keras.saving.register_keras_serializable(package="tfnas")
class StepSGD(StepWeightDecay, keras.optimizers.SGD):
    """`keras.optimizers.SGD` whose weight decay reads the learning rate once a step."""


def as_keras(optimizer: Any) -> Any:
    """Keras' own optimizer with `optimizer`'s configuration and state (a copy of every
    variable when it is built): what a saved model.keras should hold, so that it loads with
    Keras alone. A Keras optimizer is returned as it is."""
    for ours, theirs in ((StepAdam, keras.optimizers.Adam), (StepSGD, keras.optimizers.SGD)):
        if isinstance(optimizer, ours):
            break
    else:
        return optimizer
    plain = theirs.from_config(optimizer.get_config())
    if optimizer.built:
        plain.build(optimizer._trainable_variables)
        for mine, copy in zip(optimizer.variables, plain.variables):
            copy.assign(mine)
    return plain
