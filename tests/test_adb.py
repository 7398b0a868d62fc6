"""AdbDevice against a fake `adb` that plays back benchmark_model output (tests/fixtures)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import ROOT, error_lines, run_tool
from tfnas.deploy import export
from tfnas import nets
from tfnas.errors import TfnasError
from tfnas.latency.devices import AdbDevice, parse_benchmark_model, parse_device
from tfnas.space import Architecture, get_space

FAKE = ROOT / "tests" / "fixtures" / "fake_adb"


@pytest.fixture
def fake_adb(monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE}{os.pathsep}{os.environ['PATH']}")
    return monkeypatch


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    arch = Architecture.uniform(get_space("tiny"), "mbconv_k3_e3")
    path = tmp_path_factory.mktemp("adb") / "net.tflite"
    path.write_bytes(export.to_tflite(nets.build(arch), arch=arch))
    return path


def test_success_parses_the_timed_run(fake_adb, model):
    device = parse_device("adb:FAKE123", threads=1)
    result = device.benchmark(model, runs=37, warmup=4)
    assert result.runs == 37  # the timed run's count, not the warm-up's
    assert result.median_ms == pytest.approx(19.164)
    assert result.mean_ms == pytest.approx(19.2316)
    assert result.min_ms == pytest.approx(18.950) and result.std_ms == pytest.approx(0.302)
    assert result.p90_ms == pytest.approx(19.820)  # benchmark_model's p95
    assert device.describe()["kind"] == "adb"


@pytest.mark.parametrize("mode,message", [
    ("nodevice", "adb device 'FAKE123' not found"),
    ("nobinary", "benchmark_model is not on adb:FAKE123: adb push"),
    ("garbled", "could not read benchmark_model output.*Segmentation"),
])
def test_missing_device_missing_binary_and_garbled_output(fake_adb, model, mode, message):
    fake_adb.setenv("FAKE_ADB_MODE", mode)
    with pytest.raises(TfnasError, match=message):
        AdbDevice("FAKE123").benchmark(model)


def test_no_adb_on_path(monkeypatch, model):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TfnasError, match="not found: install Android platform-tools"):
        AdbDevice("FAKE123", adb="adb").benchmark(model)


def test_older_benchmark_model_output_without_percentiles():
    text = ("count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 "
            "std=109798\n\nInference timings in us: Init: 17187, First inference: 3512391, "
            "Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06\n")
    result = parse_benchmark_model(text)
    assert result.median_ms == pytest.approx(2950.34)  # no median printed: the mean
    assert result.runs == 50


def test_benchmark_tool_on_the_fake_phone_and_its_errors(model):
    env_path = f"{FAKE}{os.pathsep}{os.environ['PATH']}"
    os.environ["PATH"], saved = env_path, os.environ["PATH"]
    try:
        ok = run_tool("benchmark.py", f"--model={model}", "--device=adb:FAKE123", "--json",
                      "--runs=20")
        os.environ["FAKE_ADB_MODE"] = "nodevice"
        bad = run_tool("benchmark.py", f"--model={model}", "--device=adb:FAKE123")
    finally:
        os.environ["PATH"] = saved
        os.environ.pop("FAKE_ADB_MODE", None)
    assert ok.returncode == 0, ok.stderr
    assert '"median_ms": 19.164' in ok.stdout
    assert bad.returncode == 2 and len(error_lines(bad.stderr)) == 1


BOARD = f"{sys.executable} {ROOT / 'tests' / 'fixtures' / 'fake_board.py'}"


@pytest.mark.parametrize("mode,median", [("plain", 12.5), ("bmm", 19.164)])
def test_command_device_reads_plain_or_benchmark_model_output(model, mode, median):
    device = parse_device(f"cmd:{BOARD} {mode} {{model}} {{runs}}")
    result = device.benchmark(model, runs=21, warmup=2)
    assert result.median_ms == pytest.approx(median) and result.runs == 21
    assert device.describe()["kind"] == "cmd"


@pytest.mark.parametrize("spec,message", [
    (f"cmd:{BOARD} fail {{model}} 5", "failed \\(exit 3\\): board unreachable"),
    (f"cmd:{BOARD} silent {{model}} 5", "no latency in the output"),
    ("cmd:/no/such/benchmark {model}", "not found"),
    (f"cmd:{BOARD} plain", "must contain \\{model\\}"),
])
def test_command_device_errors(model, spec, message):
    with pytest.raises(TfnasError, match=message):
        parse_device(spec).benchmark(model, runs=5, warmup=0)
