"""What the supernet and the search ask of a searchable layer: the one interface of the Single-Path
superkernel (`tfnas.search.layers.superkernel`) and the multi-path mixed op
(`tfnas.search.layers.mixed`). A new kind of searchable layer implements it and nothing else
changes.

Probabilities and costs are read through one of four views, each with one meaning:

- `loss`: what the method's paper prices in its loss. Superkernel: the indicators, hard in
  the forward pass with sigmoid gradients (Single-Path NAS Eq. 11-12); mixed op: p = softmax(α)
  (or, in a proxyless architecture step, the sampled pair's renormalised probabilities), so
  E[R] = Σ_j p_j R_j (FBNet Eq. 4, ProxylessNAS Eq. 5).
- `decided`: the one-hot of the op `decisions()` returns now in the forward pass, with the
  relaxation's gradient (straight-through): what a budget's multiplier integrates. For the
  superkernel this is `loss` (its forward pass is always its decision).
- `sampled`: the one-hot of the path the last forward pass opened (proxyless), no gradient;
  the superkernel's decision.
- `relaxed`: the relaxation's probabilities in the forward pass too (sigmoids of the
  superkernel; p of the mixed op): what the late window averages.
"""

from __future__ import annotations

from typing import Any, Protocol

from tfnas.space import Op

VIEWS = ("loss", "decided", "sampled", "relaxed")


def check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}: expected one of {', '.join(VIEWS)}")


class SearchableLayer(Protocol):
    """The interface (see the module docstring)."""

    @property
    def architecture_variables(self) -> tuple[Any, ...]:
        """The layer's architecture parameters (thresholds; α)."""

    def op_probabilities(self, view: str = "loss") -> dict[Op, Any]:
        """P(op) of every candidate op under `view`."""

    def expected_cost(self, costs: dict[Op, float], view: str = "loss") -> Any:
        """Σ_op P(op)·costs[op] under `view` (costs: the layer's table rows, params, FLOPs)."""

    def op_scores(self) -> dict[Op, float]:
        """log P(op) under the relaxation, as floats: how strongly the search holds each op."""

    def decisions(self) -> Op:
        """The op the layer selects now (what `supernet.derive` returns)."""

    def anneal(self, temperature: float, drop_rate: float) -> None:
        """The epoch's schedules: each layer takes the ones it has (Gumbel temperature: mixed
        ops; kernel-subset drop rate: the superkernel)."""
