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
freshly loaded models, and each model keeps its median timing.

Groups are small (`group=2`: two models and the reference take turns). Models timed in one
round-robin evict each other's weights from the caches, so the group size is part of what is
measured: on this host 16 networks timed in groups of 8 read 6-8% lower (`tiny`) and 1-3%
lower (`single_path`) than the same networks in groups of 2 or alone, and three passes in
groups of 8 repeated worse (0.9-1.8% MAPE between passes on `single_path`) than in groups of
2 (0.6-1.0%). Small groups are the closest to a model running alone, as it does on the
device, so every number tfnas measures (rows, calibration, predictor data, validation, the
searched network) is taken in groups of 2, and all of them share one context.

One reference does not cancel every change of the host: over ten minutes here the ratio of
`single_path` networks to their reference moved by 3.5% (the same 30 networks, timed twice
ten minutes apart, then kept their level within 0.2%). Larger networks lean more on memory
than the small reference, and neighbours' load shifts that balance. So a meter can also be
*anchored* to a table (`anchor_to`): with every `anchor_every` models it times the table's
calibration networks again and scales the chunk by median(stored / now) of those anchors,
which puts new numbers in the units of the day the table was measured. `anchor_scales` keeps
each chunk's factor: how much faster the host is now than then, for reports. That drift is
slow (3.5% in ten minutes, above), so anchors timed less than `anchor_seconds` (120 s) ago
keep their scale for the next chunk instead of being timed again; a table whose calibration
networks this process has just measured (`anchor_to(..., measured_at=...)`) is its own anchor
timing, at scale 1. The quickstart measured its searched network 2.5 s a time with the six
anchors re-timed, 0.7 s without.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tfnas.errors import TfnasError
from tfnas.latency.devices import STATISTICS, BenchmarkResult, Device
from tfnas.space import Architecture
from tfnas.space.architecture import arch_of_record, arch_record, architecture_from_dict

ANCHORS = 8  # calibration networks a meter anchors to (the first ones: smallest, largest, ...)


def default_reference(space: Any) -> Any:
    """The space's network with its smallest kernel and expansion in every layer; of a network
    of DARTS cells, the cells of skip connections alone (`placeholder_genotype`)."""
    from tfnas.space.cells import CellArchitecture, is_cell_network, placeholder_genotype

    if is_cell_network(space):
        return CellArchitecture(space, placeholder_genotype())
    return Architecture.uniform(space, space.smallest_op)


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
    group: int = 2  # models timed together with one reference (see above)
    repeats: int = 3  # timings of each group, on freshly loaded models; the median is kept
    anchors: tuple[tuple[Architecture, float], ...] = ()  # (network, latency in table units)
    anchor_every: int = 32  # models measured per timing of the anchors, at most
    anchor_seconds: float = 120.0  # anchors timed this recently keep their scale
    anchor_scales: list[float] = dataclasses.field(default_factory=list)  # one per chunk
    # (time.monotonic(), scale) of the last timing of the anchors, or None
    last_anchoring: tuple[float, float] | None = None
    # (the anchors, their models): built once per set of anchors
    _anchor_models: tuple[Any, list[bytes]] = dataclasses.field(
        default_factory=lambda: ((), []), repr=False)

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
        if self.anchor_every < 1:
            raise TfnasError(f"anchor_every must be at least 1, got {self.anchor_every}")

    def model_of(self, arch: Any) -> bytes:
        """The .tflite this meter times for the whole network of `arch` (its hand-written
        graph, `tfnas.latency.timing_models.network`)."""
        from tfnas.latency import timing_models

        return timing_models.network(arch)

    def describe(self) -> dict[str, Any]:
        """What a table or dataset records about how its numbers were taken."""
        info: dict[str, Any] = {"statistic": self.statistic, "runs": self.runs,
                                "warmup": self.warmup, "min_seconds": self.min_seconds,
                                "repeats": self.repeats}
        if self.reference is not None:
            info.update(reference=self.reference.to_dict(), reference_ms=self.reference_ms)
        if self.anchors:
            info["anchors"] = {"archs": [arch_record(a) for a, _ in self.anchors],
                               "measured_ms": [ms for _, ms in self.anchors]}
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
            self.reference = architecture_from_dict(recorded["reference"])
            self.reference_ms = float(recorded["reference_ms"])
        if recorded.get("anchors") and self.reference is not None:
            space = self.reference.space
            anchors = recorded["anchors"]
            self.anchors = tuple((arch_of_record(space, item), float(ms)) for item, ms in
                                 zip(anchors["archs"], anchors["measured_ms"]))

    def anchor_to(self, table: Any, count: int = ANCHORS,
                  measured_at: float | None = None) -> None:
        """Times `count` of the table's calibration networks (the smallest, the largest and
        random ones) again with chunks of models, so values keep the table's units even if the
        host's balance has moved since (see the module docstring). `measured_at`: the
        `time.monotonic()` at which this process began measuring those networks for the
        table, if it just did (they need no timing again for `anchor_seconds`)."""
        calibration = table.calibration
        if not calibration.get("archs") or self.reference is None:
            return
        space = self.reference.space
        self.anchors = tuple((arch_of_record(space, item), float(ms)) for item, ms in
                             list(zip(calibration["archs"], calibration["measured_ms"]))[:count])
        self.last_anchoring = None if measured_at is None else (measured_at, 1.0)

    def measure(self, models: Sequence[bytes],
                on_value: Callable[[int, float, BenchmarkResult], None] | None = None
                ) -> list[float]:
        """Latency in ms of each .tflite flatbuffer; `on_value(index, ms, raw stats)` is called
        as each group finishes (each chunk, when anchored), for progress and resumable writes.
        On a pool of devices (`tfnas.latency.pool`) the groups are spread over them."""
        if hasattr(self.device, "measure_with"):  # a DevicePool
            return self.device.measure_with(self, models, on_value)
        if not self.anchors or not models:
            return self._measure(models, on_value)
        import numpy as np

        if self._anchor_models[0] != self.anchors:
            self._anchor_models = (self.anchors, [self.model_of(a) for a, _ in self.anchors])
        anchor_models = self._anchor_models[1]
        stored = np.array([ms for _, ms in self.anchors])
        values: list[float] = []
        for start in range(0, len(models), self.anchor_every):
            chunk = list(models[start:start + self.anchor_every])
            raw: list[BenchmarkResult] = []
            last = self.last_anchoring
            if last is not None and time.monotonic() - last[0] < self.anchor_seconds:
                now, scale = self._measure(chunk, lambda i, ms, r: raw.append(r)), last[1]
            else:
                now = self._measure(chunk + anchor_models, lambda i, ms, r: raw.append(r))
                scale = float(np.median(stored / np.array(now[len(chunk):])))
                self.last_anchoring = (time.monotonic(), scale)
            self.anchor_scales.append(scale)
            for i, ms in enumerate(now[:len(chunk)]):
                values.append(ms * scale)
                if on_value:
                    on_value(start + i, values[-1], raw[i])
        return values

    def _measure(self, models: Sequence[bytes],
                 on_value: Callable[[int, float, BenchmarkResult], None] | None = None
                 ) -> list[float]:
        """`measure` without anchors: reference-corrected values, group by group."""
        values: list[float] = []
        with tempfile.TemporaryDirectory() as folder:
            ref_path = None
            if self.reference is not None:
                ref_path = Path(folder) / "reference.tflite"
                ref_path.write_bytes(self.model_of(self.reference))
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

    def _time(self, paths: list[Path], seconds: float) -> list[BenchmarkResult]:
        return self.device.benchmark_many(paths, runs=self.runs, warmup=self.warmup,
                                          min_seconds=seconds)
