"""Drift-corrected measurement: values are scaled by the reference, and resume in its units."""

from __future__ import annotations

import pytest

from tfnas.errors import TfnasError
from tfnas.latency import measured, timing_models
from tfnas.latency.devices import BenchmarkResult
from tfnas.latency.meter import Meter, default_reference
from tfnas.space import Architecture, get_space


class SlowingDevice:
    """A fake device whose speed halves between calls; the reference slows with the rest."""

    name = "fake:slowing"

    def __init__(self, sizes: dict[int, float]) -> None:
        self.sizes, self.factor = sizes, 1.0

    def benchmark_many(self, paths, *, runs, warmup, min_seconds):
        results = []
        for path in paths:
            ms = self.sizes[len(open(path, "rb").read())] * self.factor
            results.append(BenchmarkResult(ms, ms, 0.0, ms, ms, runs, p10_ms=ms))
        self.factor *= 2.0
        return results

    def describe(self):
        return {"device": self.name, "threads": 1}


def test_reference_cancels_a_host_that_slows_down():
    space = get_space("tiny")
    ref, a, b = (default_reference(space), Architecture.sample(space, 1),
                 Architecture.sample(space, 2))
    models = [timing_models.network(x) for x in (ref, a, b)]
    device = SlowingDevice({len(models[0]): 10.0, len(models[1]): 20.0, len(models[2]): 5.0})
    meter = Meter(device, group=1, reference=ref, repeats=1)
    assert meter.measure(models[1:]) == pytest.approx([20.0, 5.0])  # 1x, 2x, 4x slower calls
    plain = Meter(SlowingDevice(device.sizes), group=1, reference=None, repeats=1)
    assert plain.measure(models[1:]) == pytest.approx([20.0, 10.0])  # the drift shows


class BurstyDevice:
    """A fake device on which the model's timing of each call is taken from `bursts`."""

    name = "fake:bursty"

    def __init__(self, reference_size: int, bursts: list[float]) -> None:
        self.reference_size, self.bursts, self.calls = reference_size, list(bursts), 0

    def benchmark_many(self, paths, *, runs, warmup, min_seconds):
        results = []
        for path in paths:
            is_ref = len(open(path, "rb").read()) == self.reference_size
            ms = 10.0 if is_ref else self.bursts[self.calls]
            results.append(BenchmarkResult(ms, ms, 0.0, ms, ms, runs, p10_ms=ms))
        self.calls += 1
        return results


def test_repeated_timings_keep_each_models_median_pass():
    space = get_space("tiny")
    ref, arch = default_reference(space), Architecture.sample(space, 1)
    models = [timing_models.network(x) for x in (ref, arch)]
    seen = []
    meter = Meter(BurstyDevice(len(models[0]), [20.0, 31.0, 21.0]), reference=ref,
                  reference_ms=10.0, repeats=3)
    value = meter.measure(models[1:], on_value=lambda i, ms, raw: seen.append(raw.p10_ms))
    assert value == pytest.approx([21.0]) and seen == [21.0]  # the burst (31) is dropped
    once = Meter(BurstyDevice(len(models[0]), [31.0]), reference=ref, reference_ms=10.0,
                 repeats=1)
    assert once.measure(models[1:]) == pytest.approx([31.0])
    with pytest.raises(TfnasError, match="repeats"):
        Meter(_real(), repeats=0)


class TiltingDevice:
    """A fake device on which every network but the reference slows by `tilt` (a host whose
    balance moved: the reference alone no longer cancels it)."""

    name = "fake:tilting"

    def __init__(self, sizes: dict[int, float], reference_size: int) -> None:
        self.sizes, self.reference_size, self.tilt = sizes, reference_size, 1.0

    def benchmark_many(self, paths, *, runs, warmup, min_seconds):
        results = []
        for path in paths:
            size = len(open(path, "rb").read())
            ms = self.sizes[size] * (1.0 if size == self.reference_size else self.tilt)
            results.append(BenchmarkResult(ms, ms, 0.0, ms, ms, runs, p10_ms=ms))
        return results

    def describe(self):
        return {"device": self.name, "threads": 1}


def test_anchors_keep_the_tables_units_when_the_reference_alone_does_not():
    from tfnas.latency.table import LatencyTable

    space = get_space("tiny")
    ref = default_reference(space)
    archs = measured.sample_unique(space, 6, seed=3, exclude={measured.key(ref)})
    models = {a: timing_models.network(a) for a in [ref, *archs]}
    sizes = {len(m): 10.0 + i for i, m in enumerate(models.values())}
    assert len(sizes) == len(models)  # the fake tells the networks apart by size
    device = TiltingDevice(sizes, len(models[ref]))
    table = LatencyTable({}, 0.0, {"device": device.name})
    table.calibration = {"archs": [list(a.op_names) for a in archs[:4]],
                         "measured_ms": [sizes[len(models[a])] for a in archs[:4]]}
    device.tilt = 1.1  # since the table was measured, networks got 10% dearer than the ref
    new = [models[a] for a in archs[4:]]
    meter = Meter(device, group=2, repeats=1, reference=ref, reference_ms=10.0)
    assert meter.measure(new) == pytest.approx([1.1 * sizes[len(m)] for m in new])
    meter.anchor_to(table)
    assert meter.measure(new) == pytest.approx([sizes[len(m)] for m in new])
    assert meter.anchor_scales == pytest.approx([1 / 1.1])
    record = meter.describe()
    assert record["anchors"]["measured_ms"] == table.calibration["measured_ms"]
    fresh = Meter(device, reference=ref)
    fresh.adopt(record)  # a dataset resumed later is anchored the same way
    assert fresh.anchors == meter.anchors


def test_anchors_timed_recently_keep_their_scale_and_are_timed_again_later():
    """Drift is slow: anchors timed within `anchor_seconds` are not timed again for the next
    chunk; a table calibrated just now is its own anchor timing (scale 1)."""
    import time

    from tfnas.latency.table import LatencyTable

    space = get_space("tiny")
    ref = default_reference(space)
    archs = measured.sample_unique(space, 6, seed=3, exclude={measured.key(ref)})
    models = {a: timing_models.network(a) for a in [ref, *archs]}
    sizes = {len(m): 10.0 + i for i, m in enumerate(models.values())}
    device = TiltingDevice(sizes, len(models[ref]))
    timed = []
    benchmark = device.benchmark_many
    device.benchmark_many = lambda paths, **kw: timed.append(len(paths)) or benchmark(paths,
                                                                                       **kw)
    table = LatencyTable({}, 0.0, {"device": device.name})
    table.calibration = {"archs": [list(a.op_names) for a in archs[:4]],
                         "measured_ms": [sizes[len(models[a])] for a in archs[:4]]}
    new = [models[archs[4]]]
    meter = Meter(device, group=2, repeats=1, reference=ref, reference_ms=10.0)
    meter.anchor_to(table)
    device.tilt = 1.1
    assert meter.measure(new) == pytest.approx([sizes[len(new[0])]])  # anchors timed
    groups = len(timed)
    device.tilt = 1.2  # (a jump no host makes in seconds: shows the scale was kept)
    assert meter.measure(new) == pytest.approx([1.2 / 1.1 * sizes[len(new[0])]])
    assert len(timed) == groups + 1  # the model's group alone
    assert meter.anchor_scales == pytest.approx([1 / 1.1, 1 / 1.1])
    meter.anchor_seconds = 0.0  # as if the last timing were old: timed again
    assert meter.measure(new) == pytest.approx([sizes[len(new[0])]])
    fresh = Meter(device, group=2, repeats=1, reference=ref, reference_ms=10.0)
    fresh.anchor_to(table, measured_at=time.monotonic())
    count = len(timed)
    assert fresh.measure(new) == pytest.approx([1.2 * sizes[len(new[0])]])  # scale 1
    assert len(timed) == count + 1 and fresh.anchor_scales == [1.0]


def test_dataset_collection_resumes_in_the_same_units(tmp_path):
    space = get_space("tiny")
    ref = default_reference(space)
    path = tmp_path / "data.json"
    first = Meter(_real(), runs=2, warmup=0, min_seconds=0, reference=ref,
                  repeats=1)
    archs, ms = measured.collect(path, space, first, 3, seed=0, progress=False)
    assert len(archs) == 3 and all(m > 0 for m in ms)
    second = Meter(_real(), runs=2, warmup=0, min_seconds=0, reference=ref,
                   repeats=1)
    archs2, ms2 = measured.collect(path, space, second, 5, seed=0, progress=False)
    assert second.reference_ms == first.reference_ms  # adopted, not re-measured
    assert archs2[:3] == archs and ms2[:3] == ms and len(set(map(str, archs2))) == 5
    with pytest.raises(TfnasError, match="another space"):
        measured.collect(path, get_space("cifar"), second, 1, progress=False)


def test_bad_meter_settings_are_clear():
    with pytest.raises(TfnasError, match="unknown statistic"):
        Meter(_real(), statistic="p99")
    with pytest.raises(TfnasError, match="unknown statistic"):
        BenchmarkResult.from_samples([1.0]).statistic("p99")


def _real():
    from tfnas.latency.devices import LocalDevice

    return LocalDevice(threads=1)
