"""DARTS' pooling ops, `max_pool_3x3` and `avg_pool_3x3` (Liu et al. 2019): 3x3 windows with
the edge's stride, SAME padding; the average leaves the padding out of the count (PyTorch's
`count_include_pad=False`, TensorFlow's SAME average). No weights, no multiply-adds."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfnas.space.cells import EdgeSignature


def params(sig: "EdgeSignature") -> int:
    return 0


def flops(sig: "EdgeSignature") -> int:
    return 0


def build(x: Any, k: ModuleType, sig: "EdgeSignature", name: str, sync_bn: bool = False,
          affine: bool = True) -> Any:
    layer = k.layers.MaxPooling2D if sig.op.startswith("max") else k.layers.AveragePooling2D
    return layer(3, strides=sig.stride, padding="same", name=f"{name}_pool")(x)


def timing(g: Any, x: int, sig: "EdgeSignature") -> int:
    """The op's operator in a timing graph (`tfnas.latency.timing_models`)."""
    return g.pool(x, "MAX" if sig.op.startswith("max") else "AVERAGE", 3, sig.stride)
