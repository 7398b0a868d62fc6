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
- Latency from a predictor (LA-DARTS' MLP on the cells' encoding) is not a sum over edges: as
  for layer spaces (`tfnas.search.budget`), it is linearised around the network at hand (each
  choice of a node priced by the predictor with that node changed, the rest kept), solved,
  and linearised again around the answer until it stays; the answers are checked with the
  predictor itself. Targets (R = T within a tolerance) keep every choice, their partial costs
  merged in bins of tolerance·T / (4·groups). `cost_range` of a predictor is found by
  coordinate descent over the nodes from the FLOPs extremes.
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


def cost_range(cost: Any, network: Any = None) -> tuple[float, float]:
    """(cost of the cheapest derivable network, cost of the dearest): exactly for a
    `CellCost`; for a latency predictor of `network`, by coordinate descent over the nodes
    from the FLOPs extremes (each node's best choice given the others, until none moves)."""
    if isinstance(cost, CellCost):
        return tuple(cost.of(CellArchitecture(cost.network, extreme(cost, dearest)))
                     for dearest in (False, True))  # type: ignore[return-value]
    nodes = predictor_nodes(cost)
    flops = CellCost.counting("flops", network, nodes)
    values = []
    for dearest in (False, True):
        sign = -1.0 if dearest else 1.0
        arch = CellArchitecture(network, extreme(flops, dearest))
        for _ in range(10):
            groups, picks, deltas, base = _linearised(cost, arch)
            choices = [p[int(np.argmin(sign * d))] for p, d in zip(picks, deltas)]
            best = CellArchitecture(network, _genotype(choices, nodes))
            if sign * cost.of(best) >= sign * base - 1e-12:
                break  # (all nodes moved at once: kept only if it helps)
            arch = best
        values.append(cost.of(arch))
    return values[0], values[1]


def predictor_nodes(predictor: Any) -> int:
    """Intermediate nodes per cell of the networks a cell latency predictor encodes."""
    edges = len(predictor.weights[0]) // len(CELL_OPS) // (2 if predictor.reduce_cell else 1)
    nodes = 0
    while edge_count(nodes) < edges:
        nodes += 1
    return nodes


def _node_choices(nodes: int) -> list[list[tuple[int, int, int, int]]]:
    """Per node, every (e1, o1, e2, o2) a derived cell can give it (α rows and op indices)."""
    return [[(e1, o1, e2, o2) for e1, e2 in itertools.combinations(edges, 2)
             for o1 in _OPS for o2 in _OPS] for edges in node_edges(nodes)]


def _linearised(predictor: Any, around: CellArchitecture
                ) -> tuple[list[tuple[str, int]], list[list[Any]], list[np.ndarray], float]:
    """Per (kind, node): its choices and the predictor's change of latency when that node
    alone takes each (0 for a kind the predictor does not encode), and the latency of
    `around`."""
    nodes = around.genotype.normal.nodes
    code = around.one_hot(reduce=predictor.reduce_cell)
    base = float(predictor.predict_codes(code[None])[0])
    n_edges = edge_count(nodes)
    groups, picks, deltas = _groups(nodes), [], []
    node_choices = _node_choices(nodes)
    for kind, j in groups:
        k, choices = CELL_KINDS.index(kind), node_choices[j]
        picks.append(choices)
        if k == 1 and not predictor.reduce_cell:
            deltas.append(np.zeros(len(choices)))
            continue
        batch = np.repeat(code[None], len(choices), axis=0)
        rows = node_edges(nodes)[j]
        batch[:, k * n_edges + rows.start:k * n_edges + rows.stop] = 0.0
        at = np.arange(len(choices))
        c = np.array(choices)
        batch[at, k * n_edges + c[:, 0], c[:, 1]] = 1.0
        batch[at, k * n_edges + c[:, 2], c[:, 3]] = 1.0
        deltas.append(predictor.predict_codes(batch) - base)
    return groups, picks, deltas, base


def _choices(tables: Sequence[Any], scores: Any, edges: list[int], maxima: bool,
             linear: dict[int, dict[Any, float]] | None = None
             ) -> tuple[list[tuple[int, int, int, int]], np.ndarray, np.ndarray]:
    """One group's choices (e1, o1, e2, o2) with their weights and [choices, costs] costs
    (a cost c in `linear`: its linearised change per choice instead of a table); with only max
    budgets, the choices another beats on weight and every cost are left out."""
    linear = linear or {}
    picks = [(e1, o1, e2, o2) for e1, e2 in itertools.combinations(edges, 2)
             for o1 in _OPS for o2 in _OPS]
    weight = np.array([scores[e1][o1] + scores[e2][o2] for e1, o1, e2, o2 in picks])
    costs = np.array([[linear[c][p] if c in linear else t[e1][o1] + t[e2][o2]
                       for c, t in enumerate(tables)] for p in picks for e1, o1, e2, o2 in [p]])
    if maxima:  # (a target could need a dearer choice)
        order = np.lexsort((*costs.T[::-1], -weight))  # heaviest first
        kept: list[int] = []
        for i in order:
            if not any(weight[k] >= weight[i] and np.all(costs[k] <= costs[i]) for k in kept):
                kept.append(int(i))
        picks, weight, costs = [picks[i] for i in kept], weight[kept], costs[kept]
    return picks, weight, costs


def solve(arch: CellArchitecture, scores: dict[str, Any], constraints: Sequence[Constraint],
          tolerance: float = 0.01) -> tuple[CellArchitecture, list[Any]]:
    """The derivable network of highest architecture weight within every budget (max: at
    most T; target: within ±tolerance·T, else the nearest; see the module docstring);
    `scores[kind]` are the [edges, ops] log-weights (`CellSupernet.op_scores`), `arch` the
    search's own network. Returns the network and, per node it changed, a `knapsack.Move`."""
    nodes = arch.genotype.normal.nodes
    additive = [isinstance(c.cost_model, CellCost) for c in constraints]
    targets = any(c.kind != "max" for c in constraints)
    pareto = next((j for j, c in enumerate(constraints) if c.kind == "max"), None)
    groups = _groups(nodes)
    steps = [0.0 if (all(additive) and not targets) else
             c.target * tolerance / (4 * len(groups)) for c in constraints]
    limits = [c.target if c.kind == "max" else np.inf for c in constraints]
    around, tried = arch, []
    for _ in range(4):  # a predictor: re-linearise around the answer until it stays
        candidates, weights = [], []
        rows: list[list[dict[Any, float]]] = [[] for _ in constraints]
        fixed = [c.cost_model.fixed if a else 0.0 for c, a in zip(constraints, additive)]
        linear = {c: _linearised(constraints[c].cost_model, around)
                  for c in range(len(constraints)) if not additive[c]}
        for c, (_, _, _, base) in linear.items():
            fixed[c] = base
        for g, (kind, j) in enumerate(groups):
            k = CELL_KINDS.index(kind)
            picks, group_weight, costs = _choices(
                [np.asarray(c.cost_model.tables[k]) if a else None
                 for c, a in zip(constraints, additive)],
                np.asarray(scores[kind]), list(node_edges(nodes)[j]), not targets,
                {c: dict(zip(parts[1][g], parts[2][g])) for c, parts in linear.items()})
            candidates.append(picks)
            weights.append(dict(zip(picks, group_weight)))
            for c in range(len(constraints)):
                rows[c].append(dict(zip(picks, costs[:, c])))
        costs, total, choices_of = knapsack.dp(candidates, weights, fixed, rows, limits, steps,
                                             pareto)
        if len(total) == 0:
            raise TfnasError("no network of cells meets "
                             + ", ".join(c.describe() for c in constraints))
        answer = CellArchitecture(arch.network, _genotype(
            choices_of(knapsack.pick(costs, total, constraints, tolerance)), nodes))
        done = answer in tried or all(additive)
        tried.append(answer)
        if done:
            break
        around = answer
    true = np.array([[c.cost_model.of(a) for c in constraints] for a in tried])
    tried_weights = np.array([weight(a, scores) for a in tried])
    fits = np.all(true <= np.array(limits) * (1 + 1e-12), axis=1)
    if not np.any(fits):
        raise TfnasError("could not meet " + ", ".join(
            c.describe() for c in constraints if c.kind == "max") + " with this cost model")
    best = int(np.flatnonzero(fits)[knapsack.pick(true[fits], tried_weights[fits], constraints,
                                                  tolerance)])
    return tried[best], moves(arch, tried[best], scores, constraints)


def _groups(nodes: int) -> list[tuple[str, int]]:
    """What the solver chooses one at a time: (cell kind, node)."""
    return [(kind, j) for kind in CELL_KINDS for j in range(nodes)]


def weight(arch: CellArchitecture, scores: dict[str, Any]) -> float:
    """Σ over the kept edges of the op's log-weight (what `solve` maximises)."""
    return sum(float(scores[kind][row][op]) for kind in CELL_KINDS
               for row, op in getattr(arch.genotype, kind).kept())


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


def moves(before: CellArchitecture, after: CellArchitecture, scores: dict[str, Any],
          constraints: Sequence[Constraint]) -> list[Any]:
    """Per node the solver changed: its edges before and after (op/source), the weight given
    up and the cost change of that node alone."""
    def node(arch: CellArchitecture, kind: str, j: int) -> tuple[tuple[str, int], ...]:
        cell = getattr(arch.genotype, kind)
        return cell.edges[2 * j:2 * j + 2]

    def node_weight(edges: tuple[tuple[str, int], ...], kind: str, j: int) -> float:
        # (the α row of the edge from `src` into node j: `node_edges`' numbering)
        return sum(float(scores[kind][edge_count(j) + src][CELL_OPS.index(op)])
                   for op, src in edges)

    found = []
    for g, (kind, j) in enumerate(_groups(before.genotype.normal.nodes)):
        old, new = node(before, kind, j), node(after, kind, j)
        if old == new:
            continue
        cells = {k: getattr(before.genotype, k) for k in CELL_KINDS}
        edges = list(cells[kind].edges)
        edges[2 * j:2 * j + 2] = new
        cells[kind] = Cell(tuple(edges), cells[kind].concat)
        trial = CellArchitecture(before.network, Genotype(cells["normal"], cells["reduce"]))
        lost = node_weight(old, kind, j) - node_weight(new, kind, j)
        found.append(knapsack.Move(
            g, " ".join(f"{o}/{s}" for o, s in old), " ".join(f"{o}/{s}" for o, s in new),
            lost if math.isfinite(lost) else None,
            {c.name: c.cost_model.of(trial) - c.cost_model.of(before) for c in constraints},
            where=f"{kind} node {INPUT_NODES + j}"))
    return found
