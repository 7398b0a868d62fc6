"""Op families: one module per family gives an op's params and FLOPs, its standard-Keras
builder and its TFLite timing graph (docs/design.md, "How to add an op").

Layer spaces (MBConv and skip): a family module defines `params(sig)`, `flops(sig)`,
`build(x, k, sig, name, sync_bn, residual)` and `timing(g, x, sig)` for a `LayerSignature`;
`family(op)` picks the module of an `Op`.

The DARTS cell space: `sep_conv`, `dil_conv`, `pool` and `identity` define `params(sig)`,
`flops(sig)` and `build(x, k, sig, name, sync_bn, affine)` for an `EdgeSignature`;
`cell_family(name)` picks the module of an op name; `cell_units` holds the cell's fixed units.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from tfnas.blocks import dil_conv, identity, mbconv, pool, sep_conv, skip

# DARTS' op names (its PRIMITIVES but `none`, which no derived cell keeps) → family
CELL_FAMILIES = {"max_pool_3x3": pool, "avg_pool_3x3": pool, "skip_connect": identity,
                 "sep_conv_3x3": sep_conv, "sep_conv_5x5": sep_conv,
                 "dil_conv_3x3": dil_conv, "dil_conv_5x5": dil_conv}


def family(op: Any) -> ModuleType:
    """The module that describes `op` (a `tfnas.space.Op`)."""
    return skip if op.is_skip else mbconv


def cell_family(name: str) -> ModuleType:
    """The module that describes the DARTS cell op `name` (e.g. `sep_conv_3x3`)."""
    return CELL_FAMILIES[name]
