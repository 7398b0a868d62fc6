"""Budgets of a search of DARTS cells: what the derived cells can cost, and the cells that meet
the budgets with the most architecture weight.

A derived cell keeps two edges into each intermediate node, each with one op other than `none`
(DARTS Sec. 2.4), and the cells of a kind share their genotype, so a network's params (or FLOPs)
are a fixed part plus, per (kind, node), the cost of that node's two edges summed over the
cells of the kind (`tfnas.costs.CellCost`). Hence:

- `extreme(cost, dearest)`, `cost_range(cost)`: the cheapest and dearest derivable networks,
  exactly (per node, the two edges of least / most cost, each with its cheapest / dearest op).
- `solve(arch, scores, constraints)`: DCA-NAS (Dutta et al. 2022) closes the gap between the
  relaxed cost its search constrains and the derived network's cost with a lookup graph from
  the device's budget to a tighter search budget, built by searching several times. tfnas needs
  none: of the networks the search's α can derive, `solve` returns the one of highest
  architecture weight (Σ over the kept edges of log(op weight · edge weight), the quantity
  whose per-node maximum is DARTS' own derivation) within every max budget: the multiple-choice
  knapsack of `knapsack.dp` with one group per (kind, node) and one choice per (pair of edges,
  op on each). Choices another choice of the same group beats on weight and on every cost are
  dropped first (from 490 to a few dozen per node), so the dynamic programme is exact and fast.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np

from tfnas.costs import CELL_KINDS, CellCost
from tfnas.errors import TfnasError
from tfnas.search import knapsack
from tfnas.search.objectives import Constraint
from tfnas.space.cells import (CELL_OPS, INPUT_NODES, Cell, CellArchitecture, Genotype,
                               edge_count, edge_sources, node_edges)

_OPS = [o for o, op in enumerate(CELL_OPS) if op != "none"]  # what a derived edge can hold


def extreme(cost: CellCost, dearest: bool) -> Genotype:
    """The cheapest (or dearest) derivable cells under `cost`: per node, the two edges whose
    cheapest (dearest) op costs least (most), each with that op."""
    sign = -1.0 if dearest else 1.0
    choices = []
    for table in cost.tables:
        for edges in node_edges(cost.nodes):
            best = sorted((sign * table[e][o], e, o) for e in edges for o in _OPS)
            picked: dict[int, int] = {}
            for _, e, o in best:  # each edge's best op, the two best edges
                if e not in picked and len(picked) < 2:
                    picked[e] = o
            (e1, o1), (e2, o2) = sorted(picked.items())
            choices.append((e1, o1, e2, o2))
    return _genotype(choices, cost.nodes)


def cost_range(cost: CellCost) -> tuple[float, float]:
    """(cost of the cheapest derivable network, cost of the dearest), exactly."""
    return tuple(cost.of(CellArchitecture(cost.network, extreme(cost, dearest)))
                 for dearest in (False, True))  # type: ignore[return-value]


def _choices(tables: Sequence[Any], scores: Any, edges: list[int], maxima: bool
             ) -> tuple[list[tuple[int, int, int, int]], np.ndarray, np.ndarray]:
    """One group's choices (e1, o1, e2, o2) with their weights and [choices, costs] costs;
    with only max budgets, the choices another beats on weight and every cost are left out."""
    picks = [(e1, o1, e2, o2) for e1, e2 in itertools.combinations(edges, 2)
             for o1 in _OPS for o2 in _OPS]
    weight = np.array([scores[e1][o1] + scores[e2][o2] for e1, o1, e2, o2 in picks])
    costs = np.array([[t[e1][o1] + t[e2][o2] for t in tables] for e1, o1, e2, o2 in picks])
    if maxima:  # (a target could need a dearer choice)
        order = np.lexsort((*costs.T[::-1], -weight))  # heaviest first
        kept: list[int] = []
        for i in order:
            if not any(weight[k] >= weight[i] and np.all(costs[k] <= costs[i]) for k in kept):
                kept.append(int(i))
        picks, weight, costs = [picks[i] for i in kept], weight[kept], costs[kept]
    return picks, weight, costs


def solve(arch: CellArchitecture, scores: dict[str, Any], constraints: Sequence[Constraint]
          ) -> tuple[CellArchitecture, list[Any]]:
    """The derivable network of highest architecture weight within every max budget (see the
    module docstring); `scores[kind]` are the [edges, ops] log-weights
    (`CellSupernet.op_scores`), `arch` the search's own network. Returns the network and, per
    node it changed, a `knapsack.Move`."""
    if any(c.kind != "max" for c in constraints):
        raise TfnasError("a cell search meets max budgets (--max_mparams, --max_mflops); "
                         "latency targets on cells are not supported yet")
    nodes = arch.genotype.normal.nodes
    tables = [[np.asarray(c.cost_model.tables[k]) for c in constraints]
              for k in range(len(CELL_KINDS))]
    groups, candidates, weights, rows = [], [], [], [[] for _ in constraints]
    for k, kind in enumerate(CELL_KINDS):
        for j, edges in enumerate(node_edges(nodes)):
            picks, weight, costs = _choices(tables[k], np.asarray(scores[kind]), edges, True)
            groups.append((kind, j))
            candidates.append(picks)
            weights.append(dict(zip(picks, weight)))
            for c in range(len(constraints)):
                rows[c].append(dict(zip(picks, costs[:, c])))
    limits = [c.target for c in constraints]
    costs, total, choices_of = knapsack.dp(candidates, weights,
                                         [c.cost_model.fixed for c in constraints], rows,
                                         limits, [0.0] * len(constraints), 0)
    if len(total) == 0:
        raise TfnasError("no network of cells meets "
                         + ", ".join(c.describe() for c in constraints))
    choices = choices_of(int(np.argmax(total)))
    answer = CellArchitecture(arch.network, _genotype(choices, nodes))
    return answer, _moves(arch, answer, groups, scores, constraints)


def _genotype(choices: Sequence[tuple[int, int, int, int]], nodes: int) -> Genotype:
    source = [s for _, s in edge_sources(nodes)]  # α row → the node its edge comes from
    concat = tuple(range(INPUT_NODES, INPUT_NODES + nodes))
    cells = []
    for k in range(len(CELL_KINDS)):
        edges = []
        for e1, o1, e2, o2 in choices[k * nodes:(k + 1) * nodes]:
            edges += [(CELL_OPS[o1], source[e1]), (CELL_OPS[o2], source[e2])]
        cells.append(Cell(tuple(edges), concat))
    return Genotype(*cells)


def _moves(before: CellArchitecture, after: CellArchitecture, groups: list[tuple[str, int]],
           scores: dict[str, Any], constraints: Sequence[Constraint]) -> list[Any]:
    """Per node the solver changed: its edges before and after (op/source), the weight given
    up and the cost change of that node alone."""
    def node(arch: CellArchitecture, kind: str, j: int) -> tuple[tuple[str, int], ...]:
        cell = getattr(arch.genotype, kind)
        return cell.edges[2 * j:2 * j + 2]

    def weight(edges: tuple[tuple[str, int], ...], kind: str, j: int) -> float:
        # (the α row of the edge from `src` into node j: `node_edges`' numbering)
        return sum(float(scores[kind][edge_count(j) + src][CELL_OPS.index(op)])
                   for op, src in edges)

    moves = []
    for g, (kind, j) in enumerate(groups):
        old, new = node(before, kind, j), node(after, kind, j)
        if old == new:
            continue
        cells = {k: getattr(before.genotype, k) for k in CELL_KINDS}
        edges = list(cells[kind].edges)
        edges[2 * j:2 * j + 2] = new
        cells[kind] = Cell(tuple(edges), cells[kind].concat)
        trial = CellArchitecture(before.network, Genotype(cells["normal"], cells["reduce"]))
        lost = weight(old, kind, j) - weight(new, kind, j)
        moves.append(knapsack.Move(
            g, " ".join(f"{o}/{s}" for o, s in old), " ".join(f"{o}/{s}" for o, s in new),
            lost if math.isfinite(lost) else None,
            {c.name: c.cost_model.of(trial) - c.cost_model.of(before) for c in constraints},
            where=f"{kind} node {INPUT_NODES + j}"))
    return moves
