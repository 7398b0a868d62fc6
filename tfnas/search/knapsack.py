"""The multiple-choice knapsack behind the budget solvers (`tfnas.search.budget` for layer
spaces, `tfnas.search.cell_budget` for networks of cells), and the record of what a solver
changed."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Move:
    """One layer (of a network of cells: one node) the solver changed in the derived network."""

    layer: int
    before: str
    after: str
    weight_lost: float | None  # log-probability given up (None: the op had probability 0)
    changed: dict[str, float]  # cost change of this layer alone, per budget name
    where: str | None = None  # what `layer` counts, when not a layer: "normal node 3"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def dp(candidates: Sequence[Sequence[Any]], scores: Sequence[dict[Any, float]],
       fixed: Sequence[float], rows: Sequence[Sequence[dict[Any, float]]],
       limits: Sequence[float], steps: Sequence[float], pareto: int | None
       ) -> tuple[np.ndarray, np.ndarray, Any]:
    """The multiple-choice knapsack of `solve`, over groups (layers; a cell network's nodes)
    each choosing one of its `candidates`, with `scores[i][choice]` and each cost's
    `rows[c][i][choice]`. Every reachable (cost vector, best weight) of whole networks: states
    are partial networks group by group, pruned where a max budget is already exceeded (`limits`, +inf for
    targets) and merged by their costs, each cost in bins of `steps` (0: exact values). The
    cost `pareto` (a max budget, where less is never worse) is kept out of the bins: of the
    states that share the other costs' bins, only those no cheaper state outweighs survive.
    Returns the final costs [S, C], their weights [S] and a function giving the choices of
    final state s."""
    n_layers, n_costs = len(candidates), len(fixed)
    table = [np.array([[rows[c][i][op] for c in range(n_costs)] for op in candidates[i]])
             for i in range(n_layers)]
    weight = [np.array([max(scores[i].get(op, -1e9), -1e9) for op in candidates[i]])
              for i in range(n_layers)]
    # the least each budget's remaining layers can add, for pruning against max budgets
    rest = np.zeros((n_layers + 1, n_costs))
    for i in range(n_layers - 1, -1, -1):
        rest[i] = rest[i + 1] + table[i].min(axis=0)
    limits_, steps_ = np.asarray(limits, float), np.asarray(steps, float)
    binned = [c for c in range(n_costs) if c != pareto]
    costs = np.asarray(fixed, float)[None, :]
    weights = np.zeros(1)
    history: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(n_layers):
        k = len(candidates[i])
        costs = (costs[:, None, :] + table[i][None, :, :]).reshape(-1, n_costs)
        weights = (weights[:, None] + weight[i][None, :]).reshape(-1)
        parent = np.repeat(np.arange(len(weights) // k), k)
        choice = np.tile(np.arange(k), len(weights) // k)
        keep = np.all(costs + rest[i + 1] <= limits_ + 1e-12, axis=1)
        costs, weights, parent, choice = costs[keep], weights[keep], parent[keep], choice[keep]
        keys = np.stack([np.floor(costs[:, c] / steps_[c]) if steps_[c] > 0 else
                         np.round(costs[:, c], 12) for c in binned], axis=1) if binned else \
            np.zeros((len(weights), 1))
        within = costs[:, pareto] if pareto is not None else np.zeros(len(weights))
        # by key, then (the Pareto cost, then weight, descending)
        order = np.lexsort((-weights, within, *keys.T[::-1]))
        keys, costs, weights = keys[order], costs[order], weights[order]
        parent, choice, within = parent[order], choice[order], within[order]
        start = np.ones(len(keys), bool)
        start[1:] = np.any(keys[1:] != keys[:-1], axis=1)
        # keep a state if it outweighs every cheaper (or equal) state of its key
        group = np.cumsum(start) - 1
        span = weights.max() - weights.min() + 1.0 if len(weights) else 1.0
        lifted = weights + group * 2.0 * span  # groups do not mix in the running maximum
        best_before = np.concatenate([[-np.inf], np.maximum.accumulate(lifted)[:-1]])
        best_before[start] = -np.inf
        keep = lifted > best_before
        costs, weights, parent, choice = costs[keep], weights[keep], parent[keep], choice[keep]
        history.append((parent, choice))
        if len(weights) == 0:
            break

    def ops_of(state: int) -> tuple[Any, ...]:
        picked = []
        for i in range(len(history) - 1, -1, -1):
            parent, choice = history[i]
            picked.append(candidates[i][choice[state]])
            state = parent[state]
        return tuple(reversed(picked))

    return costs, weights, ops_of


def pick(costs: np.ndarray, weights: np.ndarray, constraints: Sequence[Any],
         tolerance: float) -> int:
    """The state of highest weight with every target within tolerance; else the one nearest
    the targets (largest relative miss smallest), then highest weight."""
    targets = [j for j, c in enumerate(constraints) if c.kind == "target"]
    if not targets:
        return int(np.argmax(weights))
    miss = np.max(np.abs(costs[:, targets] / np.array(
        [constraints[j].target for j in targets]) - 1.0), axis=1)
    inside = miss <= tolerance + 1e-12
    if np.any(inside):
        return int(np.argmax(np.where(inside, weights, -np.inf)))
    nearest = np.isclose(miss, miss.min(), rtol=0, atol=1e-12)
    return int(np.argmax(np.where(nearest, weights, -np.inf)))
