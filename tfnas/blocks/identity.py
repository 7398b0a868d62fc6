"""DARTS' `skip_connect` (Liu et al. 2019): the identity on a normal edge; on a reduction
edge (stride 2) a factorized reduce (`tfnas.blocks.cell_units`)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from tfnas.blocks import cell_units

if TYPE_CHECKING:
    from tfnas.space.cells import EdgeSignature


def params(sig: "EdgeSignature") -> int:
    if sig.stride == 1:
        return 0
    return cell_units.factorized_reduce_params(sig.channels, sig.channels)


def flops(sig: "EdgeSignature") -> int:
    if sig.stride == 1:
        return 0
    return cell_units.factorized_reduce_flops(sig.channels, sig.channels, sig.height, sig.width)


def build(x: Any, k: ModuleType, sig: "EdgeSignature", name: str, sync_bn: bool = False,
          affine: bool = True) -> Any:
    if sig.stride == 1:
        return x
    return cell_units.factorized_reduce(x, k, sig.channels, f"{name}_reduce", sync_bn, affine)


def timing(g: Any, x: int, sig: "EdgeSignature") -> int:
    """The op's operators in a timing graph (`tfnas.latency.timing_models`): none on a
    normal edge."""
    if sig.stride == 1:
        return x
    return cell_units.factorized_reduce_timing(g, x, sig.channels)
