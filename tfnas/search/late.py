"""The late window of a budgeted search: what the search held while it settled.

On a small space one layer's change moves the latency by 10%, so the architecture the
budgets' multipliers hold near a target flips between neighbours on either side of it until
the learning rates have decayed, and the last step's network is whichever side it stopped on.
Over the last quarter of the epochs (at least one, after the warm-up) the search therefore
records, each step, the network it would return and the relaxation's op probabilities.
Its answer is the network it held for the most steps among those that meet every budget
(else the one nearest to them), and the solver's architecture weights are the logarithms of
the probabilities averaged over the window: what the search preferred while it settled, not
at one instant (`tfnas.search.budget.solve`).

The record is a JSON file in the run directory, written (whole) before every checkpoint with
the (epoch, step) it holds at. It keeps the last three such states (those of the two
checkpoints kept, and one written after the newest), so a search resumed from a checkpoint
continues the window exactly where that checkpoint left it, even when the process died between
writing the record and the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tfnas.run.files import write_text
from tfnas.space import Architecture, Op, SearchSpace

FILE = "late_window.json"


def first_epoch(epochs: int, warmup_epochs: int) -> int:
    """The first epoch of the window: the last quarter of the epochs, at least the last one,
    never inside the warm-up."""
    return max(epochs - max(1, round(epochs / 4)), warmup_epochs, 0)


class LateWindow:
    """Per-step networks and summed op probabilities of the window (see the module doc)."""

    def __init__(self, path: Path, space: SearchSpace,
                 position: tuple[int, int] | None = None) -> None:
        """The record at `position` (a checkpoint's epoch and step; None: the last saved);
        empty where there is none (the search had not reached the window)."""
        self.path, self.space = path, space
        self.steps = 0
        self.sums = np.zeros((space.num_layers, len(space.ops)))
        self.held: dict[str, int] = {}  # op names joined by spaces → steps held
        self.last: dict[str, int] = {}  # → the window step it was last held at
        self.saved: list[dict[str, Any]] = []  # the last states written, oldest first
        if path.exists():
            self.saved = json.loads(path.read_text()).get("states", [])
            states = [d for d in self.saved
                      if position is None or tuple(d["position"]) == tuple(position)]
            if states:
                data = states[-1]
                self.steps, self.sums = data["steps"], np.asarray(data["sums"], float)
                self.held, self.last = dict(data["held"]), dict(data["last"])

    def update(self, hard: Any, relaxed: Any) -> None:
        """One step: the L x K one-hot of the network the search would return, and the
        relaxation's L x K probabilities."""
        ops = [self.space.ops[j] for j in np.argmax(np.asarray(hard), axis=1)]
        key = " ".join(op.name for op in ops)
        self.held[key] = self.held.get(key, 0) + 1
        self.last[key] = self.steps
        self.sums += np.asarray(relaxed, float)
        self.steps += 1

    def flush(self, position: tuple[int, int]) -> None:
        """Writes the record as of `position` (the checkpoint about to be saved)."""
        state = {"position": list(position), "steps": self.steps, "sums": self.sums.tolist(),
                 "held": dict(self.held), "last": dict(self.last)}
        self.saved = [d for d in self.saved if d["position"] != list(position)][-2:] + [state]
        write_text(self.path, json.dumps({"states": self.saved}) + "\n")

    def scores(self) -> list[dict[Op, float]]:
        """Per layer, log of each candidate's probability averaged over the window."""
        mean = self.sums / max(self.steps, 1)
        return [{op: float(np.log(max(mean[i, self.space.ops.index(op)], 1e-30)))
                 for op in self.space.candidates(i)} for i in range(self.space.num_layers)]

    def choose(self, constraints: Sequence[Any], tolerance: float) -> Architecture | None:
        """The network held for the most window steps among those that meet every budget
        (targets within `tolerance`), else the one nearest to the budgets (ties: held
        longer, then held last); None for an empty window."""
        best, best_key = None, None
        for names, steps in self.held.items():
            arch = Architecture(self.space, tuple(Op.parse(n) for n in names.split()))
            excess = max((c.excess(c.cost_model.of(arch), tolerance) for c in constraints),
                         default=0.0)
            key = (excess, -steps, -self.last[names])
            if best_key is None or key < best_key:
                best, best_key = arch, key
        return best

    def describe(self, arch: Architecture) -> dict[str, int]:
        return {"steps": self.steps, "held": self.held.get(" ".join(arch.op_names), 0),
                "networks": len(self.held)}
