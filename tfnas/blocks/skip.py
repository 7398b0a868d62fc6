"""The skip (identity) op: the layer passes its input on; it costs nothing and adds no
operator. Possible only where a layer keeps its shape (stride 1, C_in == C_out)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfnas.space.ops import LayerSignature


def params(sig: "LayerSignature") -> int:
    return 0


def flops(sig: "LayerSignature") -> int:
    return 0


def build(x: Any, k: ModuleType, sig: "LayerSignature", name: str, sync_bn: bool = False,
          residual: bool = True) -> Any:
    return x


def timing(g: Any, x: int, sig: "LayerSignature") -> int:
    return x
