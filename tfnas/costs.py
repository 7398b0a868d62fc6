"""Per-layer cost rows of a space: latency (from a table), params or FLOPs.

A `CostModel` holds the fixed cost (stem, first layer, head) and, for every searchable layer,
the cost of each candidate op. Searchable layers turn it into a differentiable expected cost
(`SuperkernelMBConv.expected_cost`); for a fixed Architecture it gives the exact total. Params
and FLOPs are costs like latency, exact per op, so several constraints can hold at once.
"""

from __future__ import annotations

import dataclasses

from tfnas.latency.table import LatencyTable
from tfnas.space import Architecture, Op, SearchSpace


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Fixed cost plus, per searchable layer, op → cost; `unit` says what is counted."""

    name: str
    unit: str
    fixed: float
    layers: tuple[dict[Op, float], ...]

    def of(self, arch: Architecture) -> float:
        """Exact cost of an architecture."""
        return self.fixed + sum(rows[op] for rows, op in zip(self.layers, arch.ops))

    @classmethod
    def latency(cls, space: SearchSpace, table: LatencyTable,
                table_name: str = "the latency table") -> "CostModel":
        """Rows of the table, through its calibration when it has one: the correction is
        a·(fixed + Σ rows) + b + c·(MBConv layers) = (a·fixed + b) + Σ (a·row + c·[not skip]),
        so it stays per layer."""
        table.check_covers(space, table_name)
        a, b, c = table.scale, table.offset, table.per_layer
        layers = tuple({op: a * table.rows[space.signature(i, op)] + (0.0 if op.is_skip else c)
                        for op in space.candidates(i)} for i in range(space.num_layers))
        return cls("latency", "ms", a * table.fixed_ms + b, layers)

    @classmethod
    def params(cls, space: SearchSpace) -> "CostModel":
        layers = tuple({op: space.signature(i, op).params() / 1e6 for op in space.candidates(i)}
                       for i in range(space.num_layers))
        return cls("params", "M", space.fixed_params() / 1e6, layers)

    @classmethod
    def flops(cls, space: SearchSpace) -> "CostModel":
        layers = tuple({op: space.signature(i, op).flops() / 1e6 for op in space.candidates(i)}
                       for i in range(space.num_layers))
        return cls("flops", "MFLOPs", space.fixed_flops() / 1e6, layers)
