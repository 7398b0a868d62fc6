"""Drop-path: a training-time regulariser of networks of DARTS cells.

FractalNet (Larsson et al. 2017, Sec. 4.1, "local drop-path") as DARTS trains its evaluation
networks (Liu et al. 2019, Sec. 3.3 and its code's `drop_path`): in training, each edge's
output is zeroed for a whole example with probability p, and otherwise scaled by 1/(1 − p);
identity (skip) edges are never dropped; p rises linearly over training (p·epoch/epochs, DARTS
CIFAR: p = 0.2). The layer is the identity in inference and at p = 0, and has no weights
beyond p, so a network trained with it loads into the same network built without it (what
tfnas saves, exports and times: standard Keras layers only).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tfnas")
class DropPath(keras.layers.Layer):
    """Zeroes whole examples with probability `rate` in training, scales the rest by
    1/(1 − rate). `rate` is a non-trainable weight: the trainer moves it each epoch."""

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
        self.initial_rate, self.seed = float(rate), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape: Any) -> None:
        self.rate = self.add_weight(shape=(), initializer=keras.initializers.Constant(
            self.initial_rate), trainable=False, name="rate")
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if not training:
            return inputs
        keep = 1.0 - ops.cast(self.rate, inputs.dtype)
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype)
        return inputs * ops.cast(noise < keep, inputs.dtype) / keep

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(rate=self.initial_rate, seed=self.seed)
        return config


def set_rate(model: Any, rate: float) -> None:
    """Sets every DropPath layer of `model` to `rate`."""
    for layer in model.layers:
        if isinstance(layer, DropPath):
            layer.rate.assign(rate)
