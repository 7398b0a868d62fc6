"""Standalone networks from an Architecture, built from standard Keras layers only (rule 4).

The same builder runs against Keras 3 (`backend="keras"`) and against `tf_keras`
(`backend="tf_keras"`, extra `qat`), because tensorflow-model-optimization's `quantize_model`
only accepts tf_keras models. Layer names are deterministic, so weights can be copied by name
from one build to the other.

MBConv is the inverted residual block of MobileNetV2 (Sandler et al., Fig. 3b) as used by
MnasNet and Single-Path NAS: 1x1 expand (omitted when e == 1), k x k depthwise, 1x1 linear
project, identity shortcut when stride is 1 and channels are kept.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from tfnas.errors import TfnasError
from tfnas.space import Architecture, LayerSignature, SearchSpace

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
BACKENDS = ("keras", "tf_keras")


def depthwise_initializer(k: ModuleType) -> Any:
    """He init for a depthwise kernel: Keras' fan_in of a (k, k, C, 1) kernel counts all C
    channels, which shrinks activations by sqrt(C) per layer; its fan_out (k*k) is the true
    fan-in of each depthwise filter."""
    return k.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def keras_module(backend: str = "keras") -> ModuleType:
    """`keras` (Keras 3) or `tf_keras` (Keras 2, for tensorflow-model-optimization)."""
    if backend not in BACKENDS:
        raise TfnasError(f"unknown Keras backend {backend!r}: choose keras or tf_keras")
    try:
        return importlib.import_module(backend)
    except ImportError:
        raise TfnasError(f"{backend} is not installed: pip install 'tfnas[qat]'") from None


def batch_norm(k: ModuleType, name: str, sync_bn: bool = False) -> Any:
    """BatchNormalization; `sync_bn` synchronises statistics across replicas."""
    extra = {"synchronized": True} if sync_bn else {}
    return k.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name,
                                       **extra)


def conv_bn(x: Any, k: ModuleType, filters: int, kernel: int, stride: int, name: str,
            relu: bool = True, sync_bn: bool = False) -> Any:
    x = k.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                        kernel_initializer="he_normal", name=name)(x)
    x = batch_norm(k, f"{name}_bn", sync_bn)(x)
    return k.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def mbconv(x: Any, k: ModuleType, sig: LayerSignature, name: str, sync_bn: bool = False) -> Any:
    """The MBConv (or identity, for skip) that `sig` describes, applied to `x`."""
    if sig.op.is_skip:
        return x
    inputs = x
    if sig.op.expansion != 1:
        x = conv_bn(x, k, sig.expanded, 1, 1, f"{name}_expand", sync_bn=sync_bn)
    x = k.layers.DepthwiseConv2D(sig.op.kernel, strides=sig.stride, padding="same",
                                 use_bias=False, depthwise_initializer=depthwise_initializer(k),
                                 name=f"{name}_dw")(x)
    x = batch_norm(k, f"{name}_dw_bn", sync_bn)(x)
    x = k.layers.ReLU(name=f"{name}_dw_relu")(x)
    x = conv_bn(x, k, sig.c_out, 1, 1, f"{name}_project", relu=False, sync_bn=sync_bn)
    if sig.stride == 1 and sig.c_in == sig.c_out:
        x = k.layers.Add(name=f"{name}_add")([inputs, x])
    return x


def stem(inputs: Any, k: ModuleType, space: SearchSpace, sync_bn: bool = False) -> Any:
    """Stem conv and the fixed first layer: the part before the searchable layers."""
    x = conv_bn(inputs, k, space.stem_channels, 3, space.stem_stride, "stem", sync_bn=sync_bn)
    if space.first_layer is not None:
        x = mbconv(x, k, space.first_layer, "first", sync_bn)
    return x


def head(x: Any, k: ModuleType, space: SearchSpace, dropout: float,
         sync_bn: bool = False) -> Any:
    """The fixed last layer, 1x1 conv, pooling, dropout and the classifier: the part after the
    searchable layers."""
    if space.last_layer is not None:
        x = mbconv(x, k, space.last_layer, "last", sync_bn)
    x = conv_bn(x, k, space.head_channels, 1, 1, "head", sync_bn=sync_bn)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = k.layers.Dropout(dropout, name="dropout")(x)
    return k.layers.Dense(space.num_classes, name="logits")(x)


def check_dropout(dropout: float) -> None:
    if not 0.0 <= dropout < 1.0:
        raise TfnasError(f"dropout must be in [0, 1), got {dropout}")


def image_input(k: ModuleType, space: SearchSpace) -> Any:
    return k.Input((space.input_size, space.input_size, space.input_channels), name="image")


def build(arch: Architecture, *, dropout: float = 0.2, backend: str = "keras",
          name: str | None = None) -> Any:
    """A functional model taking [B, H, W, C] float images and returning logits."""
    check_dropout(dropout)
    k = keras_module(backend)
    space = arch.space
    inputs = image_input(k, space)
    x = stem(inputs, k, space)
    for i, sig in enumerate(arch.signatures()):
        x = mbconv(x, k, sig, f"layer{i:02d}")
    outputs = head(x, k, space, dropout)
    return k.Model(inputs, outputs, name=name or f"tfnas_{space.name}")


def recalibrate_batchnorm(model: Any, images: Any) -> None:
    """Sets every BatchNormalization's moving mean/variance to the statistics of `images`.

    One forward pass in training mode with momentum 0, so each layer sees inputs normalised by
    the already-recalibrated layers before it (the BN recalibration that Once-for-All / BigNAS
    apply to sub-networks). Gives a freshly built or derived network realistic activations.
    """
    layers = (model._flatten_layers(include_self=False) if hasattr(model, "_flatten_layers")
              else model.layers)  # nested layers too (the supernet's searchable blocks)
    norms = [layer for layer in layers if type(layer).__name__ == "BatchNormalization"]
    saved = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        model(images, training=True)
    finally:
        for layer, momentum in zip(norms, saved):
            layer.momentum = momentum
