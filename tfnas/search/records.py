"""What a search writes beside its checkpoints: the per-epoch and per-step logs and each
budget's outcome in the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tfnas.run import csvlog

LOG_FIELDS = ("epoch", "ce", "accuracy", "val_accuracy", "cost", "lam", "seconds", "arch")


def repair_report(moves: list[Any], derived: Any) -> dict[str, Any] | None:
    """The report's `repaired`: the solver's moves and the network the search derived before
    them (its `brief()` line: a layer or a cell architecture), or None without moves."""
    if not moves:
        return None
    return {"moves": [m.to_dict() for m in moves], "derived": derived.brief()}


def budget_report(constraint: Any, arch: Any, derived: Any, step_log: Path,
                  tolerance: float, measured: float | None = None) -> dict[str, Any]:
    """A budget's outcome and its multiplier's trajectory (from search_steps.csv); with
    `measured` (the budget a device times, the network measured there), its measured error, and
    whether it holds as measured."""
    lams = [float(row[f"lam_{constraint.name}"]) for row in csvlog.read_rows(step_log)]
    value, before = constraint.cost_model.of(arch), constraint.cost_model.of(derived)
    report = {"name": constraint.name, "kind": constraint.kind, "target": constraint.target,
              "unit": constraint.cost_model.unit, "timed": constraint.cost_model.timed,
              "predicted": value,
              "error": value / constraint.target - 1.0,
              "before_repair": before, "error_before_repair": before / constraint.target - 1.0,
              "holds": constraint.holds(value, tolerance),
              "lam": ({"first": lams[0], "last": lams[-1], "min": min(lams), "max": max(lams),
                       "steps": len(lams)} if lams else None)}
    if measured is not None:
        report.update(measured=measured, measured_error=measured / constraint.target - 1.0,
                      holds=constraint.holds(measured, tolerance))
    return report


class StepLog:
    """search_steps.csv: per step CE, accuracy and each budget's R, λ and T (buffered, flushed
    before every checkpoint). Opened at a checkpoint's (epoch, step), it drops the rows of
    later steps (flushed before a checkpoint that was never written), so a resumed search
    logs every step exactly once."""

    def __init__(self, path: Path, constraints: Any,
                 position: tuple[int, int] = (0, 0)) -> None:
        self.path, self.constraints = path, list(constraints)
        self.fields = ["epoch", "step", "ce", "accuracy"] + [
            f"{k}_{c.name}" for c in self.constraints for k in ("cost", "lam", "target")]
        self.rows: list[dict[str, Any]] = []
        self.sums: dict[int, dict[str, float]] = {}  # per epoch: CE, accuracy and steps
        kept = csvlog.cut(path, self.fields,
                          lambda row: (int(row["epoch"]), int(row["step"])) < tuple(position))
        for row in kept:
            self._add(int(row["epoch"]), float(row["ce"]), float(row["accuracy"]))

    def _add(self, epoch: int, ce: float, accuracy: float) -> None:
        sums = self.sums.setdefault(epoch, {"ce": 0.0, "accuracy": 0.0, "steps": 0})
        sums["ce"] += ce
        sums["accuracy"] += accuracy
        sums["steps"] += 1

    def epoch_means(self, epoch: int) -> dict[str, float]:
        """Mean CE and accuracy over every logged step of `epoch` (over resumes)."""
        sums = self.sums.get(epoch, {"ce": 0.0, "accuracy": 0.0, "steps": 0})
        n = max(sums["steps"], 1)
        return {"ce": sums["ce"] / n, "accuracy": sums["accuracy"] / n}

    def write(self, epoch: int, step: int, terms: dict[str, float], lams: list[float]) -> None:
        row: dict[str, Any] = {"epoch": epoch, "step": step, "ce": terms["ce"],
                               "accuracy": terms["accuracy"]}
        for c, lam in zip(self.constraints, lams):
            row.update({f"cost_{c.name}": terms[f"cost_{c.name}"], f"lam_{c.name}": lam,
                        f"target_{c.name}": c.target})
        self.rows.append(row)
        self._add(epoch, terms["ce"], terms["accuracy"])

    def flush(self) -> None:
        csvlog.append_rows(self.path, self.fields, self.rows)
        self.rows = []


def append_log(path: Path, row: dict[str, Any]) -> None:
    """One epoch's row of search_log.csv."""
    csvlog.append_rows(path, LOG_FIELDS, [row])
