"""What every op family's Keras builder shares: the Keras module, batch-norm constants, the
conv-BN-ReLU unit and the depthwise initializer.

Builders take the Keras module as an argument (`keras_module`), so one builder serves Keras 3
and `tf_keras` (tensorflow-model-optimization's `quantize_model` only accepts tf_keras
models) and the supernet's paths (docs/design.md, rule 4).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from tfnas.errors import TfnasError

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
BACKENDS = ("keras", "tf_keras")


def keras_module(backend: str = "keras") -> ModuleType:
    """`keras` (Keras 3) or `tf_keras` (Keras 2, for tensorflow-model-optimization)."""
    if backend not in BACKENDS:
        raise TfnasError(f"unknown Keras backend {backend!r}: choose keras or tf_keras")
    try:
        return importlib.import_module(backend)
    except ImportError:
        raise TfnasError(f"{backend} is not installed: pip install 'tfnas[qat]'") from None


def depthwise_initializer(k: ModuleType) -> Any:
    """He init for a depthwise kernel: Keras' fan_in of a (k, k, C, 1) kernel counts all C
    channels, which shrinks activations by sqrt(C) per layer; its fan_out (k*k) is the true
    fan-in of each depthwise filter."""
    return k.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def batch_norm(k: ModuleType, name: str, sync_bn: bool = False, affine: bool = True) -> Any:
    """BatchNormalization; `sync_bn` synchronises statistics across replicas; `affine=False`
    leaves out the learned scale and offset (DARTS' search network)."""
    extra = {"synchronized": True} if sync_bn else {}
    if not affine:
        extra.update(center=False, scale=False)
    return k.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
                                       **extra)


def conv_bn(x: Any, k: ModuleType, filters: int, kernel: int, stride: int, name: str,
            relu: bool = True, sync_bn: bool = False) -> Any:
    """Conv2D (no bias, SAME) → BatchNormalization → ReLU (unless `relu` is False)."""
    x = k.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                        kernel_initializer="he_normal", name=name)(x)
    x = batch_norm(k, f"{name}_bn", sync_bn)(x)
    return k.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def check_dropout(dropout: float) -> None:
    """A classifier's dropout rate must be in [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise TfnasError(f"dropout must be in [0, 1), got {dropout}")
