"""Profile a search space on a device into a LatencyTable (Single-Path NAS Sec. 3.3 / FBNet LUT).

For every distinct `LayerSignature` of the space, one small float32 .tflite holding only that
MBConv is written (`timing_models`: the operators the TFLite converter emits, without its
seconds of overhead per model), timed on the device through a `Meter` (drift-corrected against
a reference network, see `meter.py`), and written as a row. The fixed part (stem and fixed
first layer; fixed last layer, head and classifier) is timed as two more models. A skip row costs 0 ms: the identity
adds no op to a TFLite network.

Profiling is resumable: the table is rewritten after every group of rows, and a second run
against the same output measures only the rows still missing, in the units (statistic,
reference network and its latency) the table was started with.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from tfnas.errors import TfnasError
from tfnas.quiet import live_progress
from tfnas.latency import timing_models
from tfnas.latency.devices import BenchmarkResult
from tfnas.latency.meter import Meter
from tfnas.latency.table import LatencyTable, fixed_geometry, mbconv_layers
from tfnas.space import Architecture, LayerSignature, Op, SearchSpace

FIXED_KEYS = ("stem", "head")


def _open_table(out: Path, meter: Meter) -> LatencyTable:
    """The table at `out` (the meter adopts its units), or a new empty one."""
    if not out.exists():
        return LatencyTable({}, 0.0, {**meter.device.describe(), "dtype": "float32"},
                            fixed_parts={})
    table = LatencyTable.load(out)
    meter.join(table.device, str(out))
    return table


def profile(space: SearchSpace, meter: Meter, out: str | Path, *, progress: bool = True,
            on_row: Callable[[str, float], None] | None = None) -> LatencyTable:
    """Measures every missing row of `space` with `meter` into the table at `out`
    (resumable)."""
    out = Path(out)
    table = _open_table(out, meter)
    if table.fixed_parts:
        table.check_fixed(space, str(out))  # its stem and head must be this space's
    table.fixed_for = fixed_geometry(space)
    for sig in space.signatures():
        if sig.op.is_skip and sig not in table.rows:
            table.rows[sig] = 0.0
    # what to time: a fixed part's key (stem, head) or a signature
    todo: list[str | LayerSignature] = [k for k in FIXED_KEYS if k not in table.fixed_parts]
    todo += [sig for sig in space.signatures() if sig not in table.rows]
    if not todo:
        return table
    fixed = timing_models.fixed_parts(space) if any(k in FIXED_KEYS for k in todo) else {}
    models = [fixed[item] if isinstance(item, str) else timing_models.layer(item)
              for item in todo]
    keys = [item if isinstance(item, str) else item.key for item in todo]

    def row_done(index: int, ms: float, raw: BenchmarkResult) -> None:
        item = todo[index]
        if isinstance(item, str):
            table.fixed_parts[item] = ms
            table.fixed_ms = sum(table.fixed_parts.values())
        else:
            table.rows[item] = ms
        table.stats[keys[index]] = {"ms": ms, "median_ms": raw.median_ms,
                                    "p10_ms": raw.p10_ms, "std_ms": raw.std_ms,
                                    "runs": raw.runs}
        table.device.update(meter.describe())
        table.save(out)  # every row lands on disk: an interrupted run loses one group at most
        if on_row:
            on_row(keys[index], ms)

    measure_with_progress(meter, models, progress, "profiling", "rows", row_done,
                          label=lambda i: f"{keys[i]}: ")
    return table


def progress_bar(total: int, enabled: bool, what: str = "profiling", unit: str = "rows") -> Any:
    from tqdm import tqdm

    # smoothing=0: the time left from the average rate; results arrive in bursts (one group
    # of models at a time), which throws tqdm's moving average of recent rates far off
    return tqdm(total=total, disable=not (enabled and live_progress(sys.stderr)), desc=what,
                smoothing=0,
                bar_format="{desc}: {n}/{total} " + unit +
                " [{elapsed}<{remaining} left] {postfix}")


def measure_with_progress(meter: Meter, models: list[bytes], progress: bool, what: str,
                          unit: str,
                          on_value: Callable[[int, float, BenchmarkResult], None] | None = None,
                          label: Callable[[int], str] = lambda index: "") -> list[float]:
    """`meter.measure(models, on_value)` behind a progress bar that shows each latency."""
    bar = progress_bar(len(models), progress and bool(models), what, unit)
    try:
        return meter.measure(models, _reporter(bar, on_value, label))
    finally:
        bar.close()


def _reporter(bar: Any, on_value: Callable[[int, float, BenchmarkResult], None] | None,
              label: Callable[[int], str] = lambda index: "", start: int = 0
              ) -> Callable[[int, float, BenchmarkResult], None]:
    """The callback a meter calls per model: `on_value` (index shifted by `start`), then the
    bar moved on and showing the latency."""
    def done(index: int, ms: float, raw: BenchmarkResult) -> None:
        if on_value:
            on_value(start + index, ms, raw)
        bar.update(1)
        bar.set_postfix_str(f"{label(start + index)}{ms:.4g} ms")

    return done


def measure_network(arch: Architecture, meter: Meter) -> float:
    """Whole-network latency of `arch` (float32 TFLite) in ms, measured by `meter`: the mean of
    `meter.group` copies timed together, so one network is timed in the same context as the
    table's calibration networks and a predictor's dataset (groups of that size)."""
    import numpy as np

    model = meter.model_of(arch)
    return float(np.mean(meter.measure([model] * meter.group)))


def measure_networks(meter: Meter, archs: list[Any], progress: bool = True,
                     what: str = "measuring",
                     on_value: Callable[[int, float, BenchmarkResult], None] | None = None
                     ) -> list[float]:
    """Whole networks built (`Meter.model_of`) and measured a chunk at a time behind one
    progress bar: a slow build (a network of DARTS cells goes through the converter, seconds
    each) shows progress, and `on_value` (a resumable file's write) follows every chunk
    instead of waiting for every network to be built."""
    chunk = meter.anchor_every if meter.anchors else 8
    bar = progress_bar(len(archs), progress and bool(archs), what, "networks")
    values: list[float] = []
    try:
        for start in range(0, len(archs), chunk):
            models = [meter.model_of(arch) for arch in archs[start:start + chunk]]
            values += meter.measure(models, _reporter(bar, on_value, start=start))
    finally:
        bar.close()
    return values


def measure_many(archs: list[Architecture], meter: Meter, progress: bool = True
                 ) -> list[float]:
    """Whole-network latencies in ms, with a progress bar."""
    return measure_networks(meter, archs, progress)


def calibrate(table: LatencyTable, space: SearchSpace, meter: Meter, out: str | Path, *,
              num_archs: int = 8, seed: int = 0, progress: bool = True) -> LatencyTable:
    """Measures `num_archs` whole networks (the all-smallest, the all-largest and random ones)
    and fits the table's calibration; resumable like `profile` (networks already measured in
    the table are not measured again)."""
    import numpy as np

    if num_archs < 1:
        return table
    smallest = Architecture(space, tuple(min(space.candidates(i), key=lambda op: (
        op.expansion, op.kernel)) for i in range(space.num_layers)))
    largest = Architecture.uniform(space, space.largest_op)
    rng = np.random.default_rng(seed)
    archs = [smallest, largest] + [Architecture.sample(space, rng) for _ in range(num_archs)]
    archs = archs[:num_archs]
    if table.calibration.get("space", space.name) != space.name:
        raise TfnasError(f"the table is calibrated for space {table.calibration['space']!r}, "
                         f"not {space.name!r}: write the calibration to a copy of the table")
    meter.adopt(table.device)
    table.calibration["space"] = space.name
    done = table.calibration.setdefault("archs", [])
    measured = table.calibration.setdefault("measured_ms", [])
    todo = [a for a in archs if list(a.op_names) not in done]

    def network_done(index: int, ms: float, raw: BenchmarkResult) -> None:
        done.append(list(todo[index].op_names))
        measured.append(ms)
        table.save(out)

    measure_networks(meter, todo, progress, "calibrating", network_done)
    networks = [Architecture(space, tuple(Op.parse(op) for op in ops)) for ops in done]
    before = table.to_dict()
    table.fit_calibration([table.cost(a) for a in networks], measured,
                          [mbconv_layers(a) for a in networks])
    if todo or table.to_dict() != before:  # a complete table is left as it is
        table.save(out)
    return table
