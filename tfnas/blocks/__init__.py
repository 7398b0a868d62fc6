"""Op families: one module per family gives an op's params and FLOPs, its standard-Keras
builder and its TFLite timing graph (docs/design.md, "How to add an op").

A family module defines `params(sig)`, `flops(sig)`, `build(x, k, sig, name, sync_bn,
residual)` and `timing(g, x, sig)`; `family(op)` picks the module of an `Op`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from tfnas.blocks import mbconv, skip


def family(op: Any) -> ModuleType:
    """The module that describes `op` (a `tfnas.space.Op`)."""
    return skip if op.is_skip else mbconv
