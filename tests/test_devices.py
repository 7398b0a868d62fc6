"""LocalDevice benchmarking: statistics, runs, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tfnas.deploy import export
from tfnas import nets
from tfnas.errors import TfnasError
from tfnas.latency.devices import BenchmarkResult, LocalDevice, parse_device
from tfnas.space import Architecture, get_space


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A small and a 9x-FLOPs larger tiny-space model, as .tflite files."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, op, width in (("small", "mbconv_k3_e3", 1.0), ("large", "mbconv_k5_e6", 3.0)):
        arch = Architecture.uniform(get_space("tiny", width_multiplier=width), op)
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(export.to_tflite(nets.build(arch), arch=arch))
    return paths


def test_statistics_from_samples():
    result = BenchmarkResult.from_samples([1.0, 2.0, 3.0, 4.0, 100.0])
    assert result.median_ms == 3.0 and result.min_ms == 1.0 and result.runs == 5
    assert result.mean_ms == pytest.approx(22.0)
    assert result.p90_ms == pytest.approx(61.6)
    assert result.std_ms == pytest.approx(np.std([1, 2, 3, 4, 100]))


def test_local_benchmark_times_the_requested_runs_and_orders_models(tiny_models):
    device = LocalDevice(threads=1)
    small, large = device.benchmark_many([tiny_models["small"], tiny_models["large"]],
                                         runs=63, warmup=5)
    assert small.runs == 63 and large.runs == 63
    assert 0 < small.min_ms <= small.p10_ms <= small.median_ms <= small.p90_ms
    assert large.median_ms > 2 * small.median_ms  # far more FLOPs, measurably slower
    alone = device.benchmark(tiny_models["large"], runs=40, warmup=5)
    assert alone.runs == 40 and alone.median_ms > 2 * small.median_ms
    began = time.perf_counter()
    timed = device.benchmark(tiny_models["small"], runs=1, warmup=0, min_seconds=0.3)
    assert time.perf_counter() - began >= 0.3 and timed.runs > 10  # runs until min_seconds


def test_describe_gives_table_metadata():
    info = LocalDevice(threads=2).describe()
    assert info["threads"] == 2 and info["kind"] == "local"
    assert info["runtime"].startswith("ai-edge-litert ")


def test_device_errors(tmp_path, tiny_models):
    device = LocalDevice()
    with pytest.raises(TfnasError, match="does not exist"):
        device.benchmark(tmp_path / "none.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 64)
    with pytest.raises(TfnasError, match="could not load"):
        device.benchmark(bad)
    with pytest.raises(TfnasError, match="runs"):
        device.benchmark(tiny_models["small"], runs=0)
    with pytest.raises(TfnasError, match="threads"):
        LocalDevice(threads=0)
    with pytest.raises(TfnasError, match="unknown device"):
        parse_device("gpu:0")
