"""Budgets before and after a search: what a space can reach, and repairing a derived network.

- `cost_range(cost_model, space)`: the cheapest and the dearest network of a space under a
  cost model. Exact for additive models (table rows, params, FLOPs: per-layer minimum and
  maximum); for a latency predictor, coordinate descent from the FLOPs extremes. A target
  outside the range cannot be met; `check_feasible` says so in one line with the range.
- `repair(arch, scores, constraints)`: the relaxation gap (DCA-NAS, Dutta et al. 2022, which
  bridges it with a lookup graph) means a derived network can still miss a budget that the
  relaxed supernet met, and a learned multiplier still swings when the search stops. Layers
  are stepped down to cheaper candidates while a budget is exceeded, then up while one is
  more than a tolerance under its target (max budgets included: the search overshoots below
  them, and unused budget is accuracy given away), the move that gives up the least
  architecture weight (log-probability of the op under the search's relaxation) per unit of
  budget first, never past any budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from tfnas.errors import TfnasError
from tfnas.objectives import Constraint
from tfnas.space import Architecture, Op, SearchSpace


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
    """(cost of the cheapest network, cost of the dearest network) of the space."""
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


@dataclasses.dataclass(frozen=True)
class Move:
    """One layer stepped down during a repair."""

    layer: int
    before: str
    after: str
    weight_lost: float | None  # log-probability given up (None: the op had probability 0)
    changed: dict[str, float]  # cost change per budget name (negative: saved)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def repair(arch: Architecture, scores: Sequence[dict[Op, float]],
           constraints: Sequence[Constraint], tolerance: float = 0.01
           ) -> tuple[Architecture, list[Move]]:
    """Changes layers until every budget holds, within `tolerance` of its target (see the
    module docstring): over a budget, layers step down; then, while a budget is more than
    `tolerance` under its target (a max budget too: the search tends to overshoot below it,
    and capacity left unused is accuracy given away), they step up, never past any budget.

    `scores[i][op]` is the log-probability of op at layer i under the search's relaxation;
    each move is the one that gives up the least of it per unit of budget gained (in units of
    each target). Returns the repaired architecture and the moves made (none when it already
    fits)."""
    space = arch.space
    ops = list(arch.ops)
    moves: list[Move] = []
    for _ in range(4 * space.num_layers * len(space.ops) + 1):
        current = Architecture(space, tuple(ops))
        values = {c.name: c.cost_model.of(current) for c in constraints}
        high = [c for c in constraints if values[c.name] > c.target * (
            1.0 + (tolerance if c.kind == "target" else 0.0))]
        low = [c for c in constraints if values[c.name] < c.target * (1.0 - tolerance)]
        if not high and not low:
            return current, moves
        best = _best_move(space, ops, scores, constraints, values, high, low, tolerance)
        if best is None:
            break
        lost, i, op, changed = best
        moves.append(Move(i, ops[i].name, op.name, lost if math.isfinite(lost) else None,
                          changed))
        ops[i] = op
    current = Architecture(space, tuple(ops))
    missed = [c for c in constraints
              if not c.holds(c.cost_model.of(current),
                             tolerance if c.kind == "target" else 0.0)]
    if any(c.kind == "max" for c in missed):
        raise TfnasError("could not repair the derived network to meet "
                         + ", ".join(c.describe() for c in missed if c.kind == "max")
                         + ": no cheaper candidates left")
    return current, moves  # a target the space's steps cannot reach more closely


def _best_move(space: SearchSpace, ops: list[Op], scores: Sequence[dict[Op, float]],
               constraints: Sequence[Constraint], values: dict[str, float],
               high: list[Constraint], low: list[Constraint], tolerance: float
               ) -> tuple[float, int, Op, dict[str, float]] | None:
    """The cheapest move in architecture weight per unit of progress: down while a budget is
    exceeded (progress: cost saved on the exceeded ones), else up towards the targets below
    their range (progress: cost added, landing within range, no budget broken)."""
    best = None
    for i in range(space.num_layers):
        for op in space.candidates(i):
            if op == ops[i]:
                continue
            trial = Architecture(space, tuple(ops[:i] + [op] + ops[i + 1:]))
            after = {c.name: c.cost_model.of(trial) for c in constraints}
            if high:
                gain = sum(max(values[c.name] - after[c.name], 0.0) / c.target for c in high)
                breaks = any(after[c.name] > c.target for c in constraints
                             if c not in high and c.kind == "max")
            else:
                gain = sum(max(after[c.name] - values[c.name], 0.0) / c.target for c in low)
                breaks = any(after[c.name] > c.target * (
                    1.0 + (tolerance if c.kind == "target" else 0.0)) for c in constraints)
            if gain <= 0 or breaks:
                continue
            lost = scores[i].get(ops[i], 0.0) - scores[i].get(op, -math.inf)
            price = max(lost, 0.0) / gain if math.isfinite(lost) else math.inf
            if best is None or price < best[0]:
                best = (price, i, op, {c.name: after[c.name] - values[c.name]
                                       for c in constraints}, lost)
    if best is None:
        return None
    _, i, op, changed, lost = best
    return lost, i, op, changed
