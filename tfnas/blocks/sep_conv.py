"""DARTS' separable convolution, `sep_conv_3x3` and `sep_conv_5x5` (Liu et al. 2019, the
`SepConv` of its code, after NASNet): twice ReLU → k x k depthwise → 1x1 conv → BN, the first
depthwise with the edge's stride. C channels in and out, convolutions without bias."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from tfnas.blocks.common import batch_norm, depthwise_initializer

if TYPE_CHECKING:
    from tfnas.space.cells import EdgeSignature


def params(sig: "EdgeSignature") -> int:
    c, k = sig.channels, sig.kernel
    return 2 * (k * k * c + c * c + 4 * c)


def flops(sig: "EdgeSignature") -> int:
    c, k = sig.channels, sig.kernel
    return 2 * sig.out_height * sig.out_width * (k * k * c + c * c)


def build(x: Any, k: ModuleType, sig: "EdgeSignature", name: str, sync_bn: bool = False,
          affine: bool = True) -> Any:
    for i, stride in enumerate((sig.stride, 1), start=1):
        x = k.layers.ReLU(name=f"{name}_relu{i}")(x)
        x = k.layers.DepthwiseConv2D(sig.kernel, strides=stride, padding="same",
                                     use_bias=False,
                                     depthwise_initializer=depthwise_initializer(k),
                                     name=f"{name}_dw{i}")(x)
        x = k.layers.Conv2D(sig.channels, 1, use_bias=False, kernel_initializer="he_normal",
                            name=f"{name}_pw{i}")(x)
        x = batch_norm(k, f"{name}_bn{i}", sync_bn, affine)(x)
    return x


def timing(g: Any, x: int, sig: "EdgeSignature") -> int:
    """The op's operators in a timing graph (`tfnas.latency.timing_models`): per half a ReLU,
    the depthwise and the pointwise with the batch norm folded in."""
    for stride in (sig.stride, 1):
        x = g.depthwise(g.relu(x), sig.kernel, stride, relu=False)
        x = g.conv(x, sig.channels, 1, 1, relu=False, padding="VALID")
    return x
