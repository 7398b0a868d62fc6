"""Budgets before and after a search: what a space can reach, and the network that meets them.

- `cost_range(cost_model, space)`: the cheapest and the dearest network of a space under a
  cost model. Exact for additive models (table rows, params, FLOPs: per-layer minimum and
  maximum); for a latency predictor, coordinate descent from the FLOPs extremes. A target
  outside the range cannot be met; `check_feasible` says so in one line with the range.
- `solve(space, scores, constraints)`: the relaxation gap (DCA-NAS, Dutta et al. 2022, which
  bridges it with a lookup graph) means a derived network can still miss a budget that the
  relaxed supernet met, and a learned multiplier still swings when the search stops. Of the
  networks that meet every budget (max budgets: at most their target; targets: within a
  tolerance), `solve` returns the one with the highest architecture weight (Σ of each layer's
  log-probability under the search's relaxation): a multiple-choice knapsack, solved by
  dynamic programming over the layers with the costs of partial networks as states. Where no
  network of the space is within a target's tolerance, the nearest one is returned. Exact
  when the space is small enough to keep every distinct partial cost (`tiny`: 1,600 networks);
  beyond that, partial costs are merged in bins of tolerance·target / (4·layers), which keeps
  the best-weighted network of each bin (`single_path`: about 4,000 states, well under a
  second). Non-additive cost models (an MLP predictor) are linearised around the network at
  hand and solved again until the answer stops moving; the result is checked with the model.
- `match_measured(...)`: a table or predictor is a few percent off on some networks (on this
  project's hosts, about 4% on the fastest `tiny` networks at 20 µs). Once the returned network
  is measured on the device, a latency budget it misses is rescaled by the median
  measured/predicted ratio of the networks measured so far and solved again (the same
  weights), the new network measured, at most `rounds` times; of the networks measured, the
  one `solve` would pick on their measured latency is kept.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from tfnas.costs import CellCost
from tfnas.errors import TfnasError
from tfnas.search import knapsack
from tfnas.search.knapsack import Move
from tfnas.search.objectives import Constraint
from tfnas.space import Architecture, Op, SearchSpace
from tfnas.space.architecture import arch_record


def _extreme(cost_model: Any, space: SearchSpace, cheapest: bool) -> Architecture:
    """Cheapest (or dearest) network: start from the FLOPs extreme, then improve one layer at
    a time until no single change helps (exact for additive cost models)."""
    sign = 1.0 if cheapest else -1.0
    ops = [min(space.candidates(i), key=lambda op, i=i: sign * space.signature(i, op).flops())
           for i in range(space.num_layers)]
    best = sign * cost_model.of(Architecture(space, tuple(ops)))
    for _ in range(3):
        improved = False
        for i in range(space.num_layers):
            for op in space.candidates(i):
                trial = ops[:i] + [op] + ops[i + 1:]
                value = sign * cost_model.of(Architecture(space, tuple(trial)))
                if value < best - 1e-12:
                    ops, best, improved = trial, value, True
        if not improved:
            break
    return Architecture(space, tuple(ops))


def cost_range(cost_model: Any, space: SearchSpace) -> tuple[float, float]:
    """(cost of the cheapest network, cost of the dearest network) of the space (of a
    network of cells: of the cells it can derive, `cell_budget.cost_range`)."""
    from tfnas.space.cells import is_cell_network

    if isinstance(cost_model, CellCost) or is_cell_network(space):
        from tfnas.search import cell_budget

        return cell_budget.cost_range(cost_model, space)
    return (cost_model.of(_extreme(cost_model, space, True)),
            cost_model.of(_extreme(cost_model, space, False)))


def check_feasible(constraint: Constraint, space: SearchSpace) -> None:
    """One clear error when the space cannot meet the budget (or it can never bind)."""
    low, high = cost_range(constraint.cost_model, space)
    unit = constraint.cost_model.unit
    span = f"the {space.name} space spans {low:.4g} to {high:.4g} {unit} of {constraint.name}"
    flag = constraint.flag or constraint.describe()
    if constraint.target < low:
        raise TfnasError(f"{flag}={constraint.target:g} is below the cheapest network: {span}")
    if constraint.target > high:
        raise TfnasError(f"{flag}={constraint.target:g} is above the dearest network "
                         f"(nothing to search for): {span}")


EXACT_STATES = 200_000  # keep every distinct partial cost up to this many states
BINS_PER_TOLERANCE = 4  # bins of tolerance·target / (4·layers) beyond that


def _rows(cost_model: Any, space: SearchSpace, around: Architecture
          ) -> tuple[float, list[dict[Op, float]]]:
    """(fixed cost, per-layer rows) of an additive cost model (a `CostModel`); for any other
    (an MLP predictor), its first-order expansion around `around`: each layer's row is the cost
    of `around` with that layer changed, so the rows give `around` its exact cost."""
    if _additive(cost_model):
        return float(cost_model.fixed), [dict(rows) for rows in cost_model.layers]
    base = cost_model.of(around)
    rows = []
    for i in range(space.num_layers):
        row = {}
        for op in space.candidates(i):
            trial = around.ops[:i] + (op,) + around.ops[i + 1:]
            row[op] = cost_model.of(Architecture(space, trial)) - base
        rows.append(row)
    chosen = sum(rows[i][op] for i, op in enumerate(around.ops))
    return base - chosen, rows


def solve(arch: Architecture, scores: Sequence[dict[Op, float]],
          constraints: Sequence[Constraint], tolerance: float = 0.01
          ) -> tuple[Architecture, list[Move]]:
    """The network of highest architecture weight that meets every budget (see the module
    docstring); `arch` is the search's own network (returned as it is when it already has the
    highest weight among those that fit). Returns the network and the layers changed. A
    network of cells is solved by `cell_budget.solve`."""
    if not isinstance(arch, Architecture):
        from tfnas.search import cell_budget

        return cell_budget.solve(arch, scores, constraints, tolerance)
    space = arch.space
    total = 1
    for i in range(space.num_layers):
        total *= len(space.candidates(i))
    exact = total <= EXACT_STATES
    limits = [c.target if c.kind == "max" else np.inf for c in constraints]
    steps = [0.0 if exact else c.target * tolerance / (BINS_PER_TOLERANCE * space.num_layers)
             for c in constraints]
    maxima = [j for j, c in enumerate(constraints) if c.kind == "max"]
    around, tried = arch, []
    for _ in range(4):  # non-additive models: re-linearise around the answer until it stays
        parts = [_rows(c.cost_model, space, around) for c in constraints]
        candidates = [space.candidates(i) for i in range(space.num_layers)]
        costs, weights, ops_of = knapsack.dp(candidates, scores, [f for f, _ in parts],
                                     [r for _, r in parts], limits, steps,
                                     maxima[0] if maxima else None)
        if len(weights) == 0:
            raise TfnasError("no network of the space meets "
                             + ", ".join(c.describe() for c in constraints if c.kind == "max"))
        answer = Architecture(space, ops_of(knapsack.pick(costs, weights, constraints,
                                                          tolerance)))
        if answer in tried or all(_additive(c.cost_model) for c in constraints):
            tried.append(answer)
            break
        tried.append(answer)
        around = answer
    # the answers checked with the cost models themselves (exact for additive models)
    true_costs = np.array([[c.cost_model.of(a) for c in constraints] for a in tried])
    best = _pick_checked(tried, true_costs, scores, constraints, tolerance)
    if best is None:
        raise TfnasError("could not meet " + ", ".join(
            c.describe() for c in constraints if c.kind == "max") + " with this cost model")
    return tried[best], moves(arch, tried[best], scores, constraints)


def _pick_checked(archs: Sequence[Architecture], costs: np.ndarray,
                  scores: Sequence[dict[Op, float]], constraints: Sequence[Constraint],
                  tolerance: float) -> int | None:
    """Of networks whose costs per budget are known (`costs`, one row each), the index `knapsack.pick`
    takes among those within every max budget; None when none is."""
    weights = np.array([_weight(a, scores) for a in archs])
    limits = np.array([c.target if c.kind == "max" else np.inf for c in constraints])
    fits = np.all(costs <= limits * (1 + 1e-12), axis=1)
    if not np.any(fits):
        return None
    return int(np.flatnonzero(fits)[knapsack.pick(costs[fits], weights[fits], constraints,
                                                  tolerance)])


def _weight(arch: Any, scores: Any) -> float:
    """The architecture weight the solvers maximise: Σ of the chosen ops' scores (of a network
    of cells, of its kept edges, `cell_budget.weight`)."""
    if not isinstance(arch, Architecture):
        from tfnas.search import cell_budget

        return cell_budget.weight(arch, scores)
    return sum(scores[i].get(op, -1e9) for i, op in enumerate(arch.ops))


@dataclasses.dataclass(frozen=True)
class Measured:
    """A network, its latency under the cost model the search used, and on the device."""

    arch: Architecture
    predicted: float
    measured: float

    def to_dict(self) -> dict[str, Any]:
        which = "ops" if isinstance(self.arch, Architecture) else "genotype"
        return {which: arch_record(self.arch), "predicted": self.predicted,
                "measured": self.measured}


def match_measured(derived: Architecture, returned: Measured, scores: Sequence[dict[Op, float]],
                   constraints: Sequence[Constraint], tolerance: float,
                   measure: Callable[[Architecture], float], rounds: int = 4
                   ) -> tuple[Measured, list[Measured]]:
    """The returned network corrected against the device (see the module docstring).

    `derived`: the search's own network; `returned`: what `solve` gave, measured; `measure`
    times a network on the device, in the unit of the budget it measures (the one whose cost
    source is `timed`). Returns the network kept
    and every network measured (`returned` first)."""
    timed = [j for j, c in enumerate(constraints) if c.cost_model.timed]
    if not timed:
        return returned, [returned]
    j = timed[0]
    budget = constraints[j]
    tried, current = [returned], returned
    for _ in range(rounds):
        if budget.holds(current.measured, tolerance):
            break
        # the model's error near the budget: the median over the networks measured so far
        # (one network's own error is partly its own: ±5% on the fastest tiny networks)
        ratio = float(np.median([t.measured / t.predicted for t in tried]))
        scaled = [dataclasses.replace(c, target=c.target / ratio) if k == j else c
                  for k, c in enumerate(constraints)]
        try:
            arch, _ = solve(derived, scores, scaled, tolerance)
        except TfnasError:  # nothing meets the rescaled budget: keep what was measured
            break
        if any(arch == t.arch for t in tried):
            break
        current = Measured(arch, budget.cost_model.of(arch), measure(arch))
        tried.append(current)
    costs = np.array([[t.measured if k == j else c.cost_model.of(t.arch)
                       for k, c in enumerate(constraints)] for t in tried])
    keep = _pick_checked([t.arch for t in tried], costs, scores, constraints, tolerance)
    if keep is None:  # every one over a max budget: the least over
        limits = np.array([c.target if c.kind == "max" else np.inf for c in constraints])
        keep = int(np.argmin(np.max(costs / limits, axis=1)))
    return tried[keep], tried


def _additive(cost_model: Any) -> bool:
    return hasattr(cost_model, "layers") and hasattr(cost_model, "fixed")


def moves(before: Architecture, after: Architecture, scores: Sequence[dict[Op, float]],
          constraints: Sequence[Constraint]) -> list[Move]:
    """The layers `after` changed from `before`, with the weight given up and the costs (of
    a network of cells: the nodes, `cell_budget.moves`)."""
    if not isinstance(before, Architecture):
        from tfnas.search import cell_budget

        return cell_budget.moves(before, after, scores, constraints)
    moves = []
    for i, (old, new) in enumerate(zip(before.ops, after.ops)):
        if old == new:
            continue
        lost = scores[i].get(old, 0.0) - scores[i].get(new, -math.inf)
        trial = Architecture(before.space, before.ops[:i] + (new,) + before.ops[i + 1:])
        moves.append(Move(i, old.name, new.name, lost if math.isfinite(lost) else None,
                          {c.name: c.cost_model.of(trial) - c.cost_model.of(before)
                           for c in constraints}))
    return moves
