"""Drift-corrected latency measurement: models are timed next to a reference network.

A shared host (or a phone that heats up) does not keep one speed: on this 2-core VM the same
LiteRT model's median moves by 10-30% from one minute to the next as neighbours load the
machine, which no latency model can predict. Models timed in the same window slow down
together, so the `Meter` times models in groups, interleaved with a reference network, and
reports

    latency(model) = stat(model) / stat(reference) · reference_ms

where `stat` is a low percentile (p10 by default: the host's unloaded speed, the most
repeatable statistic here) and `reference_ms` is the reference's latency measured once, when
a table was built, and stored with it (with the reference architecture). Every number of one
table, its calibration networks, a predictor's dataset and a validation run is then in the
same units, whenever it was measured.

The reference should resemble what is measured: a 40 µs 16x16 network hardly feels the
memory contention that slows a 20 ms 224x224 one, so `default_reference(space)` is the
space's own all-MBConv3x3-e3 network. `reference=None` turns the correction off (a quiet
device); the values are then the plain statistic.

Drift is not the only noise: over a few seconds the same model, loaded twice and timed
side by side, can differ by several percent here (cache and memory contention from
neighbours come in bursts). Each group is therefore timed `repeats` times (3 by default), on
freshly loaded models, and each model keeps its median timing: two passes over the same
`single_path` networks then differed by 1.5-1.7% (MAPE) where one timing each differed by 2.5%.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from tfnas.errors import TfnasError
from tfnas.latency.devices import STATISTICS, BenchmarkResult, Device
from tfnas.space import Architecture, Op, SearchSpace


def default_reference(space: SearchSpace) -> Architecture:
    """The space's network with its smallest kernel and expansion in every layer."""
    return Architecture.uniform(space, Op(min(space.kernels), min(space.expansions)))


@dataclasses.dataclass
class Meter:
    """How tfnas times models on a device (see the module docstring)."""

    device: Device
    runs: int = 40
    warmup: int = 5
    min_seconds: float = 1.0
    statistic: str = "p10"
    reference: Architecture | None = None
    reference_ms: float | None = None
    group: int = 8  # models timed together with one reference
    repeats: int = 3  # timings of each group, on freshly loaded models; the median is kept

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise TfnasError(f"unknown statistic {self.statistic!r}: choose "
                             f"{', '.join(STATISTICS)}")
        if self.min_seconds < 0:
            raise TfnasError(f"min_seconds must be 0 or more, got {self.min_seconds}")
        if self.group < 1:
            raise TfnasError(f"group must be at least 1, got {self.group}")
        if self.repeats < 1:
            raise TfnasError(f"repeats must be at least 1, got {self.repeats}")

    def describe(self) -> dict[str, Any]:
        """What a table or dataset records about how its numbers were taken."""
        info: dict[str, Any] = {"statistic": self.statistic, "runs": self.runs,
                                "warmup": self.warmup, "min_seconds": self.min_seconds,
                                "repeats": self.repeats}
        if self.reference is not None:
            info.update(reference=self.reference.to_dict(), reference_ms=self.reference_ms)
        return info

    def join(self, recorded: dict[str, Any], source: str) -> None:
        """Checks that `recorded` (a table's or dataset's measurement record) was taken on this
        meter's device with the same threads and dtype, then adopts its units; `source` names
        the file in the error."""
        meta = {**self.device.describe(), "dtype": "float32"}  # timing models are float32
        known = {k: v for k, v in recorded.items() if k in ("device", "threads", "dtype")}
        if any(meta.get(k) != v for k, v in known.items()):
            raise TfnasError(f"{source} was measured on {known}, not on {meta['device']} with "
                             f"{meta['threads']} thread(s): choose another file")
        self.adopt(recorded)

    def adopt(self, recorded: dict[str, Any]) -> None:
        """Uses the statistic and reference latency a table or dataset was measured with, so
        new numbers join it in the same units."""
        if recorded.get("statistic"):
            self.statistic = recorded["statistic"]
        if recorded.get("reference") and recorded.get("reference_ms"):
            self.reference = Architecture.from_dict(recorded["reference"])
            self.reference_ms = float(recorded["reference_ms"])

    def measure(self, models: Sequence[bytes],
                on_value: Callable[[int, float, BenchmarkResult], None] | None = None
                ) -> list[float]:
        """Latency in ms of each .tflite flatbuffer; `on_value(index, ms, raw stats)` is called
        as each group finishes (for progress and resumable writes)."""
        values: list[float] = []
        with tempfile.TemporaryDirectory() as folder:
            ref_path = None
            if self.reference is not None:
                from tfnas.latency import timing_models

                ref_path = Path(folder) / "reference.tflite"
                ref_path.write_bytes(timing_models.network(self.reference))
                if self.reference_ms is None:
                    self.reference_ms = self._time([ref_path], self.min_seconds * 3)[0] \
                        .statistic(self.statistic)
            for start in range(0, len(models), self.group):
                paths = []
                for i, data in enumerate(models[start:start + self.group]):
                    paths.append(Path(folder) / f"model{i}.tflite")
                    paths[-1].write_bytes(data)
                passes = []  # (values, raw results) of each timing of the group
                for _ in range(self.repeats):
                    results = self._time(([ref_path] if ref_path else []) + paths,
                                         self.min_seconds)
                    scale = 1.0
                    if ref_path:
                        scale = self.reference_ms / results.pop(0).statistic(self.statistic)
                    passes.append(([r.statistic(self.statistic) * scale for r in results],
                                   results))
                for i in range(len(paths)):
                    # the median pass of this model, with its own raw statistics
                    ranked = sorted(passes, key=lambda p: p[0][i])
                    chosen = ranked[(len(ranked) - 1) // 2]
                    values.append(chosen[0][i])
                    if on_value:
                        on_value(start + i, values[-1], chosen[1][i])
        return values

    def measure_one(self, model: bytes) -> float:
        return self.measure([model])[0]

    def _time(self, paths: list[Path], seconds: float) -> list[BenchmarkResult]:
        return self.device.benchmark_many(paths, runs=self.runs, warmup=self.warmup,
                                          min_seconds=seconds)
