"""MBConv, with or without squeeze-and-excitation: its params, FLOPs, Keras builder and
TFLite timing graph, the one description every part of tfnas uses.

MBConv is the inverted residual of MobileNetV2 (Sandler et al. 2018, Fig. 3b) as MnasNet and
Single-Path NAS use it: 1x1 expand to C_in·e (omitted when e == 1), k x k depthwise with the
layer's stride, 1x1 linear project to C_out, identity shortcut when the layer keeps its shape.
Each convolution has no bias and is followed by batch norm; expand and depthwise by ReLU.

Squeeze-and-excitation (Hu et al. 2018; MnasNet, Tan et al. 2019, Sec. 4 and Fig. 7) between
the depthwise and the projection: global average pool, 1x1 conv to r = max(1, C_in / 4)
channels with bias and ReLU (MnasNet's se_ratio 0.25 of the block's input filters), 1x1 conv
back to C_in·e with bias and sigmoid, channel-wise scaling of the depthwise output.

After batch-norm folding the TFLite converter emits (tests/test_timing_models.py checks it):
CONV_2D 1x1 (ReLU) → DEPTHWISE_CONV_2D kxk (ReLU) [→ MEAN (keep dims) → CONV_2D 1x1 (ReLU) →
CONV_2D 1x1 → LOGISTIC → MUL] → CONV_2D 1x1 → [ADD].
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from tfnas.blocks.common import batch_norm, conv_bn, depthwise_initializer

if TYPE_CHECKING:
    from tfnas.space.ops import LayerSignature

SE_RATIO = 0.25


def se_channels(c_in: int) -> int:
    """Channels of the squeeze: a quarter of the block's input channels, at least 1."""
    return max(1, int(c_in * SE_RATIO))


def params(sig: "LayerSignature") -> int:
    """Weights: convs without bias, BatchNorm 4 per channel, the SE convs with bias."""
    k, mid = sig.op.kernel, sig.expanded
    total = 0
    if sig.op.expansion != 1:
        total += sig.c_in * mid + 4 * mid          # 1x1 expand + BN
    total += k * k * mid + 4 * mid                  # depthwise + BN
    if sig.op.se:
        r = se_channels(sig.c_in)
        total += (mid * r + r) + (r * mid + mid)    # squeeze and excite convs
    total += mid * sig.c_out + 4 * sig.c_out        # 1x1 project + BN
    return total


def flops(sig: "LayerSignature") -> int:
    """Multiply-adds of the convolutions (and SE's channel scaling); BN and ReLU fold or are
    negligible."""
    k, mid = sig.op.kernel, sig.expanded
    hw_in = sig.height * sig.width
    hw_out = sig.out_height * sig.out_width
    total = 0
    if sig.op.expansion != 1:
        total += hw_in * sig.c_in * mid
    total += hw_out * k * k * mid
    if sig.op.se:
        total += 2 * mid * se_channels(sig.c_in) + hw_out * mid
    total += hw_out * mid * sig.c_out
    return total


def build(x: Any, k: ModuleType, sig: "LayerSignature", name: str, sync_bn: bool = False,
          residual: bool = True) -> Any:
    """The block applied to `x` with Keras module `k`; `residual=False` leaves out the
    shortcut (the supernet's paths add it themselves). Layer names are `{name}_expand`,
    `{name}_dw`, `{name}_se_reduce`, `{name}_se_expand`, `{name}_project` (+ `_bn`)."""
    inputs = x
    mid = sig.expanded
    if sig.op.expansion != 1:
        x = conv_bn(x, k, mid, 1, 1, f"{name}_expand", sync_bn=sync_bn)
    x = k.layers.DepthwiseConv2D(sig.op.kernel, strides=sig.stride, padding="same",
                                 use_bias=False, depthwise_initializer=depthwise_initializer(k),
                                 name=f"{name}_dw")(x)
    x = batch_norm(k, f"{name}_dw_bn", sync_bn)(x)
    x = k.layers.ReLU(name=f"{name}_dw_relu")(x)
    if sig.op.se:
        s = k.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
        s = k.layers.Conv2D(se_channels(sig.c_in), 1, padding="same", activation="relu",
                            name=f"{name}_se_reduce")(s)
        s = k.layers.Conv2D(mid, 1, padding="same", activation="sigmoid",
                            name=f"{name}_se_expand")(s)
        x = k.layers.Multiply(name=f"{name}_se_scale")([x, s])
    x = conv_bn(x, k, sig.c_out, 1, 1, f"{name}_project", relu=False, sync_bn=sync_bn)
    if residual and sig.stride == 1 and sig.c_in == sig.c_out:
        x = k.layers.Add(name=f"{name}_add")([inputs, x])
    return x


def timing(g: Any, x: int, sig: "LayerSignature") -> int:
    """The block's operators in a timing graph (`tfnas.latency.timing_models`)."""
    inputs = x
    mid = sig.expanded
    if sig.op.expansion != 1:
        x = g.conv(x, mid, 1, 1, relu=True)
    x = g.depthwise(x, sig.op.kernel, sig.stride)
    if sig.op.se:
        s = g.mean(x, keep_dims=True)
        s = g.conv(s, se_channels(sig.c_in), 1, 1, relu=True)
        s = g.conv(s, mid, 1, 1, relu=False)
        s = g.op("LOGISTIC", [s], g.shape(s), None)
        x = g.op("MUL", [x, s], g.shape(x), "MulOptions", fusedActivationFunction=0)
    x = g.conv(x, sig.c_out, 1, 1, relu=False)
    if sig.stride == 1 and sig.c_in == sig.c_out:
        x = g.op("ADD", [inputs, x], g.shape(x), "AddOptions",
                 fusedActivationFunction=0, potScaleInt16=True)
    return x
