"""Cost sources: what a search can budget or penalise, each with its unit.

Every source answers `of(arch)` (the exact cost of a network), says what it counts (`name`:
latency, energy, params, flops) and in which `unit`, and whether a device's meter measures it
(`timed`: the milliseconds `tfnas.latency.meter` reads; the search then times its network on
the device and corrects the budget, `budget.match_measured`). Nothing else in the search
depends on which source it is: a budget is a `Constraint` on any source, a fixed-λ term an
`Objective` on one (docs/design.md, "How to add a cost").

Sources: `CostModel` (additive: a fixed part plus, per searchable layer, op → cost; from a
per-signature table in ms or mJ, or from the ops' exact params or FLOPs), and the latency
predictor (`tfnas.latency.predictor.LatencyPredictor`, an MLP on the one-hot encoding).
Searchable layers turn an additive source into a differentiable expected cost
(`SearchableLayer.expected_cost`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

from tfnas.errors import TfnasError
from tfnas.latency.table import LatencyTable
from tfnas.space import Architecture, Op, SearchSpace

TABLE_UNITS = {"ms": "latency", "mJ": "energy"}  # a table's unit → what it counts
TIMED_UNIT = "ms"  # what a device's meter measures


class CostSource(Protocol):
    """What the search needs of a cost: its name, unit, whether a device times it, and the
    exact cost of a network."""

    name: str
    unit: str

    @property
    def timed(self) -> bool: ...

    def of(self, arch: Architecture) -> float: ...


@dataclasses.dataclass(frozen=True)
class CostModel:
    """Fixed cost plus, per searchable layer, op → cost; `unit` says what is counted."""

    name: str
    unit: str
    fixed: float
    layers: tuple[dict[Op, float], ...]

    @property
    def timed(self) -> bool:
        """A device's meter measures this cost (a latency table in ms)."""
        return self.unit == TIMED_UNIT

    def of(self, arch: Architecture) -> float:
        """Exact cost of an architecture."""
        return self.fixed + sum(rows[op] for rows, op in zip(self.layers, arch.ops))

    @classmethod
    def from_table(cls, space: SearchSpace, table: LatencyTable,
                   table_name: str = "the latency table") -> "CostModel":
        """Rows of a per-signature table (latency in ms, energy in mJ: its `unit`), through
        its calibration when it has one: the correction is a·(fixed + Σ rows) + b + c·(MBConv
        layers) = (a·fixed + b) + Σ (a·row + c·[not skip]), so it stays per layer."""
        if table.unit not in TABLE_UNITS:
            raise TfnasError(f"{table_name}: unknown unit {table.unit!r}; tables hold "
                             + " or ".join(f"{name} in {unit}"
                                           for unit, name in TABLE_UNITS.items()))
        table.check_covers(space, table_name)
        a, b, c = table.scale, table.offset, table.per_layer
        layers = tuple({op: a * table.rows[space.signature(i, op)] + (0.0 if op.is_skip else c)
                        for op in space.candidates(i)} for i in range(space.num_layers))
        return cls(TABLE_UNITS[table.unit], table.unit, a * table.fixed_ms + b, layers)

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


@dataclasses.dataclass(frozen=True)
class CellCost:
    """Params (M), FLOPs (M multiply-adds) or latency (ms, a per-edge table:
    `tfnas.latency.cell_table`) of a network of DARTS cells (`tfnas.space.cells`). `fixed` is
    what no op changes (stem, preprocessing, classifier) and `tables[k][e][o]` the cost of op o
    on edge e summed over the cells of kind k (`CELL_KINDS`; α is shared by the cells of a
    kind, so the search's cost is Σ_k Σ_e Σ_o weight·table: DCA-NAS' k_s(α), its Eq. 3).
    `of(arch)` counts params and FLOPs exactly; latency is the table's sum (`sum_of`)."""

    name: str
    unit: str
    network: Any  # CellNetwork: the network the derived cells are built in
    nodes: int
    fixed: float
    tables: tuple[tuple[tuple[float, ...], ...], ...]  # per kind, [edges][ops]

    @property
    def timed(self) -> bool:
        """A device's meter measures this cost (a latency table in ms)."""
        return self.unit == TIMED_UNIT

    def of(self, arch: Any) -> float:
        if self.name in ("params", "flops"):
            return _millions(self.name, arch)
        return self.sum_of(arch)

    def sum_of(self, arch: Any) -> float:
        """`fixed` plus the table row of every kept edge's op (exact for params and FLOPs)."""
        return float(self.fixed + sum(self.tables[k][row][op]
                                      for k, kind in enumerate(CELL_KINDS)
                                      for row, op in getattr(arch.genotype, kind).kept()))

    @classmethod
    def counting(cls, what: str, network: Any, nodes: int = 4) -> "CellCost":
        """The `what` (params or flops) source of `network` with cells of `nodes` nodes."""
        def of(thing: Any) -> float:
            return _millions(what, thing)

        return cls.from_edges(what, "M" if what == "params" else "MFLOPs", network, nodes,
                              of, of)

    @classmethod
    def from_table(cls, table: Any, calibrated: bool = True) -> "CellCost":
        """The latency source (ms) of a per-edge table (`tfnas.latency.cell_table`), through
        its calibration a · sum + b when it has one (and `calibrated`)."""
        table.check_complete()
        a, b = table.linear(calibrated)
        return cls.from_edges("latency", "ms", table.network, table.nodes,
                              lambda arch: a * table.network_ms + b,
                              lambda sig: a * table.rows[sig])

    @classmethod
    def from_edges(cls, name: str, unit: str, network: Any, nodes: int,
                   network_cost: Callable[[Any], float],
                   edge_cost: Callable[[Any], float]) -> "CellCost":
        """The source whose edge of signature `sig` costs `edge_cost(sig)` and whose network
        of placeholder cells (`placeholder_genotype`) costs `network_cost(arch)`: the fixed
        part is that network less its edges."""
        from tfnas.space.cells import (CELL_OPS, CellArchitecture, edge_sources,
                                       placeholder_genotype)

        arch = CellArchitecture(network, placeholder_genotype(nodes))
        fixed = network_cost(arch)
        sources = edge_sources(nodes)
        tables = {kind: [[0.0] * len(CELL_OPS) for _ in sources] for kind in CELL_KINDS}
        for plan in arch.plan():
            fixed -= sum(edge_cost(plan.edge(e)) for e in range(len(plan.cell.edges)))
            rows = tables["reduce" if plan.reduction else "normal"]
            for e, (_, source) in enumerate(sources):
                for o, op in enumerate(CELL_OPS):
                    if op != "none":
                        rows[e][o] += edge_cost(plan.signature(op, source))
        return cls(name, unit, network, nodes, fixed,
                   tuple(tuple(tuple(row) for row in tables[kind]) for kind in CELL_KINDS))


def _millions(what: str, thing: Any) -> float:
    """Params or FLOPs (`what`) of a network or an edge, in millions."""
    return (thing.params() if what == "params" else thing.flops()) / 1e6


CELL_KINDS = ("normal", "reduce")  # a genotype's two cells, in the order of `CellCost.tables`


def exact_sources(space: Any, nodes: int = 4) -> dict[str, Any]:
    """The params and FLOPs sources of a space: a layer space, or a network of cells of
    `nodes` nodes."""
    from tfnas.space.cells import is_cell_network

    if is_cell_network(space):
        return {what: CellCost.counting(what, space, nodes) for what in ("params", "flops")}
    return {"params": CostModel.params(space), "flops": CostModel.flops(space)}
