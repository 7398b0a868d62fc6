"""Adam with its per-step scalars computed once per step, not once per variable.

Keras' Adam (Kingma & Ba 2015, Alg. 1, in the form α_t = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ),
w ← w − α_t·m/(√v + ε)) builds the step count, both bias corrections and α_t again for every
variable: about 42 graph nodes per variable. A search network has several times a child
network's variables (a mixed op holds every candidate's weights: about 600 on `cifar`), and
those nodes were a third of hard Gumbel's traced step, about 370 MiB of its resident memory on
this host (bench/search_step_cost.py --phases). `StepAdam` computes α_t once per step and
passes it on as the learning rate: per variable, only the two moment updates and the weight
update remain. The values, the optimizer's variables (so checkpoints) and the behaviour under
tf.distribute are Keras' Adam's.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfnas")
class StepAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with α_t computed once per step (module docstring); amsgrad
    is not supported."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("amsgrad"):
            raise ValueError("StepAdam does not implement amsgrad")
        super().__init__(*args, **kwargs)

    def _backend_update_step(self, grads: list, trainable_variables: list,
                             learning_rate: Any) -> None:
        step = ops.cast(self.iterations + 1, "float32")
        lr = ops.cast(learning_rate, "float32")
        alpha = lr * ops.sqrt(1.0 - ops.power(ops.cast(self.beta_2, "float32"), step)) / (
            1.0 - ops.power(ops.cast(self.beta_1, "float32"), step))
        super()._backend_update_step(grads, trainable_variables, alpha)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """One variable's update; `learning_rate` is α_t (`_backend_update_step`)."""
        alpha = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        self.assign_sub(variable, m * alpha / (ops.sqrt(v) + self.epsilon))
