"""Search objectives: cross-entropy plus cost terms on the supernet's cost R.

Fixed-λ terms (`Objective`), as in the Single-Path and FBNet papers:

- `log` (Single-Path NAS Eq. 9, after MnasNet): CE + λ·log R.
- `linear`: CE + λ·R.

Budgets with a learned multiplier (`Constraint`), so one search lands on a given cost without
tuning λ:

- `target` (LightNAS, Luo et al. 2022, Eq. 10-11): CE + λ·(R/T − 1), and after every step
  λ ← λ + η_λ·(R/T − 1): gradient ascent on the Lagrangian. λ grows while the network is too
  dear and shrinks, below zero if need be, while it is too cheap, until R = T.
- `max` (DCA-NAS, Dutta et al. 2022, Sec. 3.2): the same with λ kept ≥ 0, so R ≤ T is enough.

Plain λ·(R/T − 1) overshoots here: Adam moves every threshold at full speed while λ has the
same sign, and λ, an integral, changes sign only many steps after R crossed T (on `tiny`,
searches swung between the cheapest and the dearest networks and ended 5-35% off target).
So the term is an augmented Lagrangian (`Constraint.penalty`, κ = `kappa`): its force on the
architecture is λ + κ·clip(R/T − 1, ±0.1), which turns as soon as R crosses T, and λ
integrates the clipped violation (anti-windup), so it learns the balance with CE and not the
distance the search started from.

Each constraint has its own multiplier and cost model (latency from a table or predictor,
params, FLOPs), so several budgets hold at once (latency AND params). R/T − 1 is unit-free,
so one step size serves every target: η_λ is given per epoch (`lam_rate`: λ's change is
lam_rate·(R/T − 1) over one epoch) and divided by the epoch's steps.

R of a constraint is the cost of the architecture the supernet would derive now, with the
relaxed gradient (the superkernel's indicators are hard forward; mixed ops use the arg-max
one-hot, straight-through): λ then integrates the error of the network the search returns.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfnas.errors import TfnasError

KINDS = ("log", "linear", "target", "max")
FIXED_KINDS = ("log", "linear")
BUDGET_KINDS = ("target", "max")
DEFAULT_LAM_RATE = 3.0  # λ's change per epoch at R ≥ 1.1·T (see the module docstring)
DEFAULT_KAPPA = 10.0  # weight of the proportional (augmented Lagrangian) term
PROPORTIONAL_RANGE = 0.1  # |R/T − 1| beyond which the proportional force stops growing


@dataclasses.dataclass(frozen=True)
class Objective:
    """A fixed-λ cost term `penalty(R)`; the search loss is CE + λ · penalty(R)."""

    kind: str
    lam: float

    def __post_init__(self) -> None:
        if self.kind not in FIXED_KINDS:
            raise TfnasError(f"unknown cost {self.kind!r}: choose {', '.join(FIXED_KINDS)}")
        if not self.lam > 0:
            raise TfnasError(f"λ (--lam) must be positive, got {self.lam}")

    def penalty(self, cost: Any) -> Any:
        from keras import ops

        return ops.log(cost) if self.kind == "log" else cost


@dataclasses.dataclass(frozen=True)
class Constraint:
    """A budget R ≤ T (`max`) or R = T (`target`) on one cost, with a learned multiplier.

    `cost_model` is a `tfnas.costs.CostModel` or a `LatencyPredictor` (anything with `name`,
    `unit` and `of(arch)`); `flag` names the command-line flag that set it, for messages.
    """

    cost_model: Any
    target: float
    kind: str = "target"
    lam_init: float = 0.0
    lam_rate: float = DEFAULT_LAM_RATE
    kappa: float = DEFAULT_KAPPA
    flag: str = ""

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise TfnasError(f"unknown budget kind {self.kind!r}: choose "
                             f"{', '.join(BUDGET_KINDS)}")
        if not self.target > 0:
            raise TfnasError(f"{self.flag or 'the target'} must be positive, got {self.target}")
        if self.lam_rate <= 0:
            raise TfnasError(f"the multiplier's rate (--lam_rate) must be positive, got "
                             f"{self.lam_rate}")
        if self.kappa < 0:
            raise TfnasError(f"kappa (--lam_kappa) must be 0 or more, got {self.kappa}")
        if self.kind == "max" and self.lam_init < 0:
            raise TfnasError(f"a max budget's multiplier starts at 0 or more, got "
                             f"{self.lam_init}")

    @property
    def name(self) -> str:
        return self.cost_model.name

    def violation(self, cost: Any) -> Any:
        """R/T − 1: the gradient of the Lagrangian in λ (positive: over budget)."""
        return cost / self.target - 1.0

    def penalty(self, lam: Any, cost: Any) -> Any:
        """The budget's term of the loss, an augmented Lagrangian whose gradient in the
        architecture is (λ + κ·clip(v, ±0.1))·∂v, v = R/T − 1 (for `max`: only while that is
        positive, as in Hestenes-Powell-Rockafellar). The κ part answers at once when R
        crosses T; the learned λ holds what stays (the pull of CE). The clip keeps a network
        far off target at the start from filling Adam's second moments with forces 20x
        those near the target, after which the architecture barely moved (a single_path
        search sat at -10% for 60 steps)."""
        from keras import ops

        v = self.violation(cost)
        # the force enters as a stopped-gradient coefficient of v (λ is not trained)
        force = lam + self.kappa * ops.clip(ops.stop_gradient(v), -PROPORTIONAL_RANGE,
                                            PROPORTIONAL_RANGE)
        if self.kind == "max":
            force = ops.maximum(force, 0.0)
        return ops.stop_gradient(force) * v

    def next_lam(self, lam: Any, cost: Any, step_size: Any) -> Any:
        """λ + η·clip(R/T − 1, ±0.1) (LightNAS Eq. 11 with the integrator clamped, as a
        controller's anti-windup: far off target the proportional term does the work, and λ
        only learns the balance with CE; unclamped, a single_path search starting at 2.9x
        its target ran λ up to 1 and sank 23% below the target before λ came back), kept
        ≥ 0 for `max`."""
        from keras import ops

        v = ops.convert_to_tensor(self.violation(cost), "float32")
        lam = lam + step_size * ops.clip(v, -PROPORTIONAL_RANGE, PROPORTIONAL_RANGE)
        return ops.maximum(lam, 0.0) if self.kind == "max" else lam

    def excess(self, value: float, tolerance: float = 0.0) -> float:
        """How far a network's cost is outside the budget, relative to T (0 inside): a target
        holds within ±tolerance, a max budget up to T itself (the one rule of tolerance)."""
        error = value / self.target - 1.0
        return max(abs(error) - tolerance if self.kind == "target" else error, 0.0)

    def holds(self, value: float, tolerance: float = 0.0) -> bool:
        """Whether a derived network's cost meets the budget (`excess` 0, up to rounding)."""
        return self.excess(value, tolerance) <= 1e-12

    def describe(self) -> str:
        sign = "≤" if self.kind == "max" else "="
        return f"{self.name} {sign} {self.target:g} {self.cost_model.unit}"

    def summary(self) -> dict[str, Any]:
        """The budget as plain JSON values (its cost by name), for reports and --dry_run."""
        return {"budget": self.describe(), "kind": self.kind, "flag": self.flag,
                "lam_init": self.lam_init, "lam_rate": self.lam_rate, "kappa": self.kappa}
