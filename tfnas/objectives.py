"""Search objectives: cross-entropy plus a cost term on the supernet's expected cost R.

- `log` (Single-Path NAS Eq. 9, after MnasNet): CE + λ·log R.
- `linear`: CE + λ·R.

R is the differentiable expected cost of `tfnas.supernet.expected_cost` (latency in ms,
params in M or MFLOPs). λ = 0 during the warm-up epochs (the paper trained weights first).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfnas.errors import TfnasError

KINDS = ("log", "linear")


@dataclasses.dataclass(frozen=True)
class Objective:
    """A cost term `penalty(R)`; the search loss is CE + λ · penalty(R)."""

    kind: str
    lam: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TfnasError(f"unknown cost {self.kind!r}: choose {', '.join(KINDS)}")
        if not self.lam > 0:
            raise TfnasError(f"λ (--lam) must be positive, got {self.lam}")

    def penalty(self, cost: Any) -> Any:
        from keras import ops

        return ops.log(cost) if self.kind == "log" else cost

    def loss(self, ce: Any, cost: Any, lam: Any) -> Any:
        """CE + lam · penalty(cost); `lam` is a tensor so warm-up can set it to 0."""
        return ce + lam * self.penalty(cost)
