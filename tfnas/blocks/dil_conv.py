"""DARTS' dilated separable convolution, `dil_conv_3x3` and `dil_conv_5x5` (Liu et al. 2019,
the `DilConv` of its code): ReLU → k x k depthwise with dilation 2 → 1x1 conv → BN, receptive
field 5x5 and 9x9. C channels in and out, convolutions without bias.

TensorFlow has no depthwise convolution with both a stride and a dilation above 1: on a
reduction edge the dilated depthwise runs at stride 1 and a 1x1 pooling with stride 2 keeps
every other row and column (the PyTorch op's outputs, centred on even pixels). Its FLOPs are
the ones computed, the depthwise at full resolution.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from tfnas.blocks.common import batch_norm, depthwise_initializer

if TYPE_CHECKING:
    from tfnas.space.cells import EdgeSignature

DILATION = 2


def params(sig: "EdgeSignature") -> int:
    c, k = sig.channels, sig.kernel
    return k * k * c + c * c + 4 * c


def flops(sig: "EdgeSignature") -> int:
    c, k = sig.channels, sig.kernel
    return sig.height * sig.width * k * k * c + sig.out_height * sig.out_width * c * c


def build(x: Any, k: ModuleType, sig: "EdgeSignature", name: str, sync_bn: bool = False,
          affine: bool = True) -> Any:
    x = k.layers.ReLU(name=f"{name}_relu")(x)
    x = k.layers.DepthwiseConv2D(sig.kernel, dilation_rate=DILATION, padding="same",
                                 use_bias=False, depthwise_initializer=depthwise_initializer(k),
                                 name=f"{name}_dw")(x)
    if sig.stride > 1:
        x = k.layers.MaxPooling2D(1, strides=sig.stride, name=f"{name}_subsample")(x)
    x = k.layers.Conv2D(sig.channels, 1, use_bias=False, kernel_initializer="he_normal",
                        name=f"{name}_pw")(x)
    return batch_norm(k, f"{name}_bn", sync_bn, affine)(x)


def timing(g: Any, x: int, sig: "EdgeSignature") -> int:
    """The op's operators in a timing graph (`tfnas.latency.timing_models`)."""
    x = g.depthwise(g.relu(x), sig.kernel, 1, relu=False, dilation=DILATION)
    if sig.stride > 1:
        x = g.pool(x, "MAX", 1, sig.stride, padding="VALID")
    return g.conv(x, sig.channels, 1, 1, relu=False, padding="VALID")
