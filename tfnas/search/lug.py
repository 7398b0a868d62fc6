"""DCA-NAS' lookup graph (LUG): from a device budget K_d to the tighter budget K_d' to search
with, so that the derived network meets K_d.

DCA-NAS (Dutta et al. 2022, Sec. 3.3) constrains the softmax-weighted cost of the relaxed cells
(its Eq. 3); the derived network's cost then differs from it (the relaxation gap), so it runs
searches at several constraints K_d', records the derived networks' costs, and for a device
budget K_d looks up the K_d' whose derived network costs K_d. A `LookupGraph` holds those
points (search budget → derived cost) for one cost (params or FLOPs); `python -m tfnas.sweep
--budgets_mparams=...` builds one (each point a resumable search, `--parallel` at a time) and
writes it as MODEL_DIR/lug.json, and `python -m tfnas.search --lug=lug.json --max_mparams=K_d`
searches with the looked-up K_d'.

The look-up is piecewise linear between the points in the order of their search budgets: the
largest K_d' at which the line through the points stays at or under K_d. A budget below every
derived cost, or a graph of fewer than two points, is one error.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tfnas.errors import TfnasError
from tfnas.run.files import write_text

METRICS = ("params", "flops")  # what a graph's budgets count (M, M multiply-adds)


@dataclasses.dataclass(frozen=True)
class LookupGraph:
    """(search budget, derived network's cost) points of one cost metric."""

    metric: str
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise TfnasError(f"a lookup graph counts {' or '.join(METRICS)}, not "
                             f"{self.metric!r}")
        if len(self.points) < 2:
            raise TfnasError(f"a lookup graph needs at least two searches, has "
                             f"{len(self.points)}")
        if len({k for k, _ in self.points}) != len(self.points):
            raise TfnasError("a lookup graph has one point per search budget")

    def search_budget(self, device_budget: float) -> float:
        """K_d' for K_d (see the module docstring)."""
        points = sorted(self.points)
        best = None
        for (k0, d0), (k1, d1) in zip(points, points[1:]):
            if d0 <= device_budget:
                best = k0
            if d1 <= device_budget:
                best = k1
            elif d0 <= device_budget < d1:  # the line crosses K_d between the two searches
                best = k0 + (device_budget - d0) * (k1 - k0) / (d1 - d0)
        if best is None:
            low = min(d for _, d in points)
            raise TfnasError(f"the lookup graph's cheapest derived network has {low:.4g} M "
                             f"{self.metric}, above the budget {device_budget:g}: add searches at "
                             "smaller budgets")
        return best

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "points": [{"search_budget": k, "derived": d}
                                                  for k, d in sorted(self.points)]}

    @classmethod
    def from_dict(cls, data: Any) -> "LookupGraph":
        try:
            return cls(data["metric"], tuple((float(p["search_budget"]), float(p["derived"]))
                                             for p in data["points"]))
        except (KeyError, TypeError, ValueError) as err:
            raise TfnasError(f"a lookup graph is {{'metric', 'points': [{{'search_budget', "
                             f"'derived'}}, ...]}}: {err!r}") from None

    def save(self, path: str | Path) -> None:
        write_text(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LookupGraph":
        path = Path(path)
        if not path.is_file():
            raise TfnasError(f"--lug={path}: no such file (build one with python -m "
                             "tfnas.sweep --budgets_mparams=...)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TfnasError) as err:
            raise TfnasError(f"--lug={path}: {err}") from None
