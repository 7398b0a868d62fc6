"""The search methods, one record each (kept free of TensorFlow imports, so flags are checked
before it loads).

A `Method` says everything the supernet and the search loop need to know about a method, so
neither branches on method names: which searchable layer it uses (the Single-Path superkernel,
or a multi-path mixed op in one of its modes), whether it learns one-level (weights and
architecture parameters on one loss, Single-Path NAS) or bi-level (an α step on held-out data
after each weight step: DARTS, FBNet, ProxylessNAS, LightNAS), how α learns (gradient, or
REINFORCE on rewards of sampled networks, ProxylessNAS Eq. 8) and with what Adam β1, and
whether α are rescaled after each step (ProxylessNAS Sec. 3.2.1). A new method is one more
record (and, for a new kind of layer or α update, the code that record names).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfnas.errors import TfnasError


@dataclasses.dataclass(frozen=True)
class Method:
    """One search method (see the module docstring)."""

    name: str
    summary: str  # for --help
    layer: str = "mixed"  # superkernel | mixed | cell (the DARTS cell space)
    mode: str | None = None  # the MixedOp mode: softmax | gumbel | proxyless
    hard: bool = False  # gumbel: one-hot forward, straight-through gradient (LightNAS)
    # gradient | reinforce (bi-level methods) | second_order (DARTS Eq. 7-8, cells)
    arch_update: str = "gradient"
    arch_beta_1: float = 0.5  # Adam β1 of α; ProxylessNAS: 0, unsampled paths' α stay put
    rescale_alpha: bool = False  # ProxylessNAS: keep unsampled paths' probabilities
    partial: int = 1  # cells: 1/K of the channels through the mixed edges (PC-DARTS)
    edge_normalization: bool = False  # cells: edge weights β (PC-DARTS)
    share_weights: bool = False  # cells: the edges leaving a node share their ops (DCA-NAS)
    # cells, DCA-NAS' search-time reductions (Sec. 3.4), defaults of --cell_bottleneck and
    # --derived_cells: nodes at C/b channels; one mixed cell per kind, the others derived
    bottleneck: int = 1
    derived_cells: bool = False
    # what a budget's multiplier prices (`tfnas.search.layers.searchable` views): the network
    # `derive` returns now (tfnas, LightNAS), or the relaxation's expected cost (DCA-NAS Eq. 3)
    budget_view: str = "decided"

    def check_space(self, space: Any) -> None:
        """Raises TfnasError when this method cannot search `space`: cell methods search
        networks of DARTS cells and only they do; the superkernel nests kernels and expansions
        only, so squeeze-and-excitation needs a multi-path method."""
        from tfnas.space.cells import is_cell_network  # (no TensorFlow behind it)

        cells = is_cell_network(space)
        if cells != (self.layer == "cell"):
            wanted = [m.name for m in _ALL if (m.layer == "cell") == cells]
            raise TfnasError(f"--method={self.name} does not search "
                             f"{'networks of DARTS cells' if cells else 'layer spaces'} "
                             f"(--space={space.name}): choose {', '.join(wanted)}")
        if self.layer == "superkernel" and True in space.squeeze_excite:
            raise TfnasError(f"--method={self.name} searches kernel sizes, expansions and skip "
                             "only; a space with squeeze-and-excitation needs a multi-path "
                             f"method ({', '.join(m.name for m in _ALL if m.layer == 'mixed')})")

    def check_widths(self, network: Any, bottleneck: int | None = None) -> int:
        """The channel bottleneck b (`bottleneck`, or this method's own when None); raises
        TfnasError unless every search cell's channels (C, 2C, 4C: doubled at each reduction
        cell) split by b and then in this method's `partial` groups (PC-DARTS' K)."""
        b = self.bottleneck if bottleneck is None else int(bottleneck)
        if b < 1:
            raise TfnasError(f"--cell_bottleneck must be at least 1, got {b}")
        if any((network.init_channels << k) % (b * self.partial) for k in range(3)):
            raise TfnasError(f"--init_channels={network.init_channels}: --method={self.name} "
                             f"with a channel bottleneck of {b} needs the cells' channels (C, "
                             f"2C, 4C) to split by {b} and then in {self.partial} "
                             "partial-channel groups")
        return b

    @property
    def bi_level(self) -> bool:
        """Multi-path and cell methods learn α on held-out data after each weight step."""
        return self.layer in ("mixed", "cell")


_ALL = (
    Method("superkernel", "Single-Path NAS", layer="superkernel"),
    Method("softmax", "DARTS/FBNet mixed op", mode="softmax"),
    Method("gumbel", "hard Gumbel-softmax, one path per step: LightNAS", mode="gumbel",
           hard=True),
    Method("gumbel_soft", "FBNet", mode="gumbel"),
    Method("proxyless", "ProxylessNAS binary gates", mode="proxyless", arch_beta_1=0.0,
           rescale_alpha=True),
    Method("proxyless_reinforce", "ProxylessNAS with REINFORCE on α, Eq. 8", mode="proxyless",
           arch_update="reinforce", arch_beta_1=0.0, rescale_alpha=True),
    # the DARTS cell space (Adam β1 0.5 on α: DARTS and PC-DARTS)
    Method("darts", "DARTS cells, first order", layer="cell", mode="softmax"),
    Method("darts_2nd", "DARTS cells, second order (unrolled weights, Eq. 7-8)",
           layer="cell", mode="softmax", arch_update="second_order"),
    Method("pc_darts", "PC-DARTS: partial channels K=4, edge normalisation", layer="cell",
           mode="softmax", partial=4, edge_normalization=True),
    Method("dca_nas", "DCA-NAS: PC-DARTS with budgets on the softmax-weighted cost, ops "
           "shared by the edges leaving a node, a 2x channel bottleneck and derived cells",
           layer="cell", mode="softmax", partial=4, edge_normalization=True, budget_view="loss",
           share_weights=True, bottleneck=2, derived_cells=True),
)
METHODS = tuple(m.name for m in _ALL)
_BY_NAME = {m.name: m for m in _ALL}


def get(name: str) -> Method:
    """The method of that name; an unknown name is one TfnasError listing them."""
    if name not in _BY_NAME:
        raise TfnasError(f"unknown search method {name!r}: choose {', '.join(METHODS)}")
    return _BY_NAME[name]


def describe() -> str:
    """`name (summary), ...` for --help."""
    return ", ".join(f"{m.name} ({m.summary})" for m in _ALL)
