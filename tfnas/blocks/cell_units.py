"""The DARTS cell's fixed units: ReLU → 1x1 conv → BN (a cell's preprocessing of an input
that has its resolution) and the factorized reduce (an input at twice the resolution, and the
skip connection of a reduction cell): their params, FLOPs and standard-Keras builders.

Both as in DARTS (Liu et al. 2019, the `ReLUConvBN` and `FactorizedReduce` of its code): the
factorized reduce is ReLU, two 1x1 convolutions with stride 2 to C_out/2 channels each, the
second on the input shifted by one pixel, concatenated, then BN. An odd input is padded by one
row and column after the shift so both halves have ⌈H/2⌉ rows.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from tfnas.blocks.common import batch_norm
from tfnas.errors import TfnasError


def half(size: int) -> int:
    """The size after a stride-2 op with SAME padding."""
    return -(-size // 2)


def relu_conv_bn_params(c_in: int, c_out: int) -> int:
    """Weights of ReLU → 1x1 conv (no bias) → BN (4 per channel, as Keras counts them)."""
    return c_in * c_out + 4 * c_out


def relu_conv_bn_flops(c_in: int, c_out: int, height: int, width: int) -> int:
    return height * width * c_in * c_out


def relu_conv_bn(x: Any, k: ModuleType, c_out: int, name: str, sync_bn: bool = False,
                 affine: bool = True) -> Any:
    x = k.layers.ReLU(name=f"{name}_relu")(x)
    x = k.layers.Conv2D(c_out, 1, use_bias=False, kernel_initializer="he_normal",
                        name=f"{name}_conv")(x)
    return batch_norm(k, f"{name}_bn", sync_bn, affine)(x)


def check_reduce(c_out: int) -> None:
    if c_out % 2:
        raise TfnasError(f"a factorized reduce needs an even number of channels, got {c_out}")


def factorized_reduce_params(c_in: int, c_out: int) -> int:
    check_reduce(c_out)
    return 2 * c_in * (c_out // 2) + 4 * c_out


def factorized_reduce_flops(c_in: int, c_out: int, height: int, width: int) -> int:
    check_reduce(c_out)
    return half(height) * half(width) * c_in * c_out


def factorized_reduce(x: Any, k: ModuleType, c_out: int, name: str, sync_bn: bool = False,
                      affine: bool = True) -> Any:
    check_reduce(c_out)
    x = k.layers.ReLU(name=f"{name}_relu")(x)
    a = k.layers.Conv2D(c_out // 2, 1, strides=2, use_bias=False,
                        kernel_initializer="he_normal", name=f"{name}_conv1")(x)
    shifted = k.layers.Cropping2D(((1, 0), (1, 0)), name=f"{name}_shift")(x)
    height, width = x.shape[1], x.shape[2]
    if height % 2 or width % 2:
        shifted = k.layers.ZeroPadding2D(((0, height % 2), (0, width % 2)),
                                         name=f"{name}_pad")(shifted)
    b = k.layers.Conv2D(c_out // 2, 1, strides=2, use_bias=False,
                        kernel_initializer="he_normal", name=f"{name}_conv2")(shifted)
    x = k.layers.Concatenate(name=f"{name}_concat")([a, b])
    return batch_norm(k, f"{name}_bn", sync_bn, affine)(x)


def relu_conv_bn_timing(g: Any, x: int, c_out: int) -> int:
    """ReLU → 1x1 conv-BN in a timing graph (`tfnas.latency.timing_models`)."""
    return g.conv(g.relu(x), c_out, 1, 1, relu=False, padding="VALID")


def factorized_reduce_timing(g: Any, x: int, c_out: int) -> int:
    """The factorized reduce in a timing graph: its BN follows a concatenation, so the
    converter keeps it as a multiply and an add."""
    check_reduce(c_out)
    x = g.relu(x)
    a = g.conv(x, c_out // 2, 1, 2, relu=False, padding="VALID")
    shifted = g.shift(x)
    _, height, width, _ = g.shape(x)
    if height % 2 or width % 2:
        shifted = g.pad_after(shifted, height % 2, width % 2)
    b = g.conv(shifted, c_out // 2, 1, 2, relu=False, padding="VALID")
    return g.batch_norm(g.concat([a, b]))
