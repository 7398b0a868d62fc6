"""Devices that run a .tflite model and time it.

Every device has one interface: `benchmark(model_path, runs=, warmup=)` returns a
`BenchmarkResult` (median, mean, standard deviation, p10, p90, min over at least `runs` timed
invocations after `warmup` untimed ones, spread over at least `min_seconds`), and
`describe()` returns metadata for latency tables.

`LocalDevice` times the LiteRT interpreter (`ai_edge_litert`, XNNPACK on CPU) on this host;
`AdbDevice` an Android phone through adb and TFLite's `benchmark_model`; `CommandDevice` any
command that prints a latency (boards over ssh). Device specs as used on command lines:
`local`, `adb:SERIAL`, `cmd:TEMPLATE` (see `parse_device`).
"""

from __future__ import annotations

import dataclasses
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from tfnas.errors import TfnasError, error_line, first_line, missing_file


def read_model_file(path: str | Path) -> bytes:
    """Bytes of a .tflite file, with a clear error when it is missing or not a TFLite model."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "model file")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TfnasError(f"{path} is not a .tflite model (no TFL3 file identifier)")
    return data


STATISTICS = ("median", "p10", "min", "mean")


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Latency statistics of one model on one device, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    min_ms: float
    runs: int
    p10_ms: float = float("nan")

    def statistic(self, name: str) -> float:
        """`median`, `p10`, `min` or `mean` in ms."""
        if name not in STATISTICS:
            raise TfnasError(f"unknown statistic {name!r}: choose {', '.join(STATISTICS)}")
        return float(getattr(self, f"{name}_ms"))

    @classmethod
    def from_samples(cls, samples_ms: Any) -> "BenchmarkResult":
        times = np.asarray(samples_ms, np.float64)
        if times.size == 0:
            raise TfnasError("no timing samples")
        return cls(median_ms=float(np.median(times)), mean_ms=float(times.mean()),
                   std_ms=float(times.std()), p90_ms=float(np.percentile(times, 90)),
                   min_ms=float(times.min()), runs=int(times.size),
                   p10_ms=float(np.percentile(times, 10)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Device(Protocol):
    """What the profiler and the tools need of a device.

    `benchmark_many` times several models for comparison; a device that can hold them all at
    once interleaves them, so slow drifts of the host hit every model alike and their ratios
    stay stable.
    """

    name: str

    def benchmark(self, model_path: str | Path, *, runs: int = 100, warmup: int = 10,
                  min_seconds: float = 0.0) -> BenchmarkResult: ...

    def benchmark_many(self, model_paths: Sequence[str | Path], *, runs: int = 100,
                       warmup: int = 10, min_seconds: float = 0.0
                       ) -> list[BenchmarkResult]: ...

    def check(self) -> None:
        """Raises a clear TfnasError when the device cannot run models."""

    def describe(self) -> dict[str, Any]: ...


def _check_counts(runs: int, warmup: int) -> None:
    if runs < 1:
        raise TfnasError(f"runs must be at least 1, got {runs}")
    if warmup < 0:
        raise TfnasError(f"warmup must be 0 or more, got {warmup}")


def _random_input(detail: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


class LocalDevice:
    """This host's CPU through the LiteRT interpreter."""

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise TfnasError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self.name = f"local:{platform.node() or 'host'}"

    def check(self) -> None:
        """This host can always run models."""

    def load(self, model_path: str | Path) -> Any:
        """A ready LiteRT interpreter for the model, or a clear error."""
        from ai_edge_litert.interpreter import Interpreter

        from tfnas.quiet import captured_output

        data = read_model_file(model_path)  # missing file / not TFLite: one clear line
        try:
            with captured_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                interpreter = Interpreter(model_content=data, num_threads=self.threads)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise TfnasError(f"LiteRT could not load {model_path}: {error_line(err)}") from None
        return interpreter

    def benchmark(self, model_path: str | Path, *, runs: int = 100, warmup: int = 10,
                  min_seconds: float = 0.0) -> BenchmarkResult:
        return self.benchmark_many([model_path], runs=runs, warmup=warmup,
                                   min_seconds=min_seconds)[0]

    def benchmark_many(self, model_paths: Sequence[str | Path], *, runs: int = 100,
                       warmup: int = 10, min_seconds: float = 0.0,
                       chunk: int = 1) -> list[BenchmarkResult]:
        """Loads every model, then times them round-robin, `chunk` runs of each per turn, until
        every model has `runs` samples and `min_seconds` have passed. Drifts of the host then
        hit all models alike, and their ratios hold."""
        _check_counts(runs, warmup)
        interpreters = [self.load(path) for path in model_paths]
        rng = np.random.default_rng(0)
        for interpreter in interpreters:
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], _random_input(detail, rng))
            for _ in range(warmup):
                interpreter.invoke()
        samples: list[list[float]] = [[] for _ in interpreters]
        clock = time.perf_counter
        began = clock()
        while len(samples[0]) < runs or clock() - began < min_seconds:
            for interpreter, times in zip(interpreters, samples):
                for _ in range(chunk):
                    start = clock()
                    interpreter.invoke()
                    times.append((clock() - start) * 1e3)
        return [BenchmarkResult.from_samples(times) for times in samples]

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"device": self.name, "kind": "local", "runtime": "ai-edge-litert "
                + version("ai-edge-litert"), "threads": self.threads,
                "machine": platform.machine(), "processor": platform.processor()}


# benchmark_model (TensorFlow Lite / LiteRT tools/benchmark) prints, in microseconds, e.g.
#   INFO: count=50 first=9906 curr=9800 min=9700 max=10400 avg=9850.2 std=120 p5=9710
#         median=9830 p95=10100
#   INFO: Inference timings in us: Init: 15000, First inference: 12000, Warmup (avg): ...
# (older builds omit "INFO: " and the p5/median/p95 fields). The last count= line is the timed
# run; benchmark_model prints no p10 or p90, so p10_ms holds its p5 (min on older builds) and
# p90_ms its p95.
_COUNT_RE = re.compile(r"count=(\d+) first=\S+ curr=\S+ min=(\S+) max=\S+ avg=(\S+) std=(\S+)"
                       r"(?: p5=(\S+) median=(\S+) p95=(\S+))?")
_SUMMARY_RE = re.compile(r"Inference timings in us: .*Inference \(avg\): (\S+)")


def parse_benchmark_model(output: str) -> BenchmarkResult:
    """Statistics of the timed run in benchmark_model's output, or a clear error."""
    matches = _COUNT_RE.findall(output)
    if not matches or not _SUMMARY_RE.search(output):
        raise TfnasError("could not read benchmark_model output (expected 'count=... avg=...' "
                         f"and 'Inference timings in us'); it began: {first_line(output)!r}")
    count, low, avg, std, p5, median, p95 = matches[-1]
    try:
        us = [float(x) if x else None for x in (low, avg, std, p5, median, p95)]
    except ValueError:
        raise TfnasError(f"garbled benchmark_model statistics: {matches[-1]}") from None
    low, avg, std, p5, median, p95 = us
    return BenchmarkResult(median_ms=(median if median is not None else avg) / 1e3,
                           mean_ms=avg / 1e3, std_ms=std / 1e3,
                           p90_ms=(p95 if p95 is not None else avg) / 1e3, min_ms=low / 1e3,
                           runs=int(count), p10_ms=(p5 if p5 is not None else low) / 1e3)


class AdbDevice:
    """An Android device over adb, timed by TFLite's `benchmark_model` binary on the device.

    Push the binary once (`adb push benchmark_model /data/local/tmp/ && adb shell chmod +x
    /data/local/tmp/benchmark_model`); each benchmark pushes the model and runs the binary.
    `delegate` is None (CPU, XNNPACK), "gpu" or "nnapi".
    """

    def __init__(self, serial: str, threads: int = 1, delegate: str | None = None,
                 binary: str = "/data/local/tmp/benchmark_model", adb: str = "adb",
                 timeout: float = 600) -> None:
        if threads < 1:
            raise TfnasError(f"threads must be at least 1, got {threads}")
        if delegate not in (None, "gpu", "nnapi"):
            raise TfnasError(f"unknown delegate {delegate!r}: choose gpu or nnapi")
        self.serial, self.threads, self.delegate = serial, threads, delegate
        self.binary, self.adb, self.timeout = binary, adb, timeout
        self.name = f"adb:{serial}"
        self._checked = False

    def _run(self, *args: str) -> str:
        command = [self.adb, *(["-s", self.serial] if self.serial else []), *args]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise TfnasError(f"{self.adb!r} not found: install Android platform-tools and put "
                             "adb on PATH") from None
        except subprocess.TimeoutExpired:
            raise TfnasError(f"adb {' '.join(args[:2])} timed out after {self.timeout:.0f} s"
                             ) from None
        if done.returncode != 0:
            message = first_line(done.stderr or done.stdout)
            if "not found" in message and "device" in message:
                raise TfnasError(f"adb device {self.serial!r} not found ({message}); see "
                                 "`adb devices`")
            raise TfnasError(f"adb {' '.join(args[:2])} failed: {message}")
        return done.stdout

    def check(self) -> None:
        """The device is attached and the benchmark binary is on it (clear error otherwise)."""
        if self._checked:
            return
        state = self._run("get-state").strip()
        if state != "device":
            raise TfnasError(f"adb device {self.serial!r} is {state or 'not ready'}")
        try:
            self._run("shell", f"ls {self.binary}")
        except TfnasError:
            raise TfnasError(
                f"{self.binary} is not on {self.name}: adb push benchmark_model "
                f"{self.binary} && adb shell chmod +x {self.binary}") from None
        self._checked = True

    def benchmark(self, model_path: str | Path, *, runs: int = 100, warmup: int = 10,
                  min_seconds: float = 0.0) -> BenchmarkResult:
        _check_counts(runs, warmup)
        read_model_file(model_path)
        self.check()
        remote = f"{Path(self.binary).parent}/tfnas_{Path(model_path).name}"
        self._run("push", str(model_path), remote)
        args = [self.binary, f"--graph={remote}", f"--num_threads={self.threads}",
                f"--num_runs={runs}", f"--warmup_runs={warmup}", f"--min_secs={min_seconds:g}"]
        if self.delegate:
            args.append(f"--use_{self.delegate}=true")
        return parse_benchmark_model(self._run("shell", " ".join(args)))

    def benchmark_many(self, model_paths: Sequence[str | Path], *, runs: int = 100,
                       warmup: int = 10, min_seconds: float = 0.0) -> list[BenchmarkResult]:
        """One after the other: benchmark_model holds one model at a time."""
        return [self.benchmark(path, runs=runs, warmup=warmup, min_seconds=min_seconds)
                for path in model_paths]

    def describe(self) -> dict[str, Any]:
        return {"device": self.name, "kind": "adb", "runtime": "benchmark_model",
                "threads": self.threads, "delegate": self.delegate or "cpu",
                "note": "p10_ms and p90_ms hold benchmark_model's p5 and p95"}


_MS_RE = re.compile(r"(?:median_ms[=:]\s*([0-9.]+))|(?:([0-9.]+)\s*ms\b)")


class CommandDevice:
    """Any command that runs a model file and prints its latency (e.g. over ssh to a board).

    The template's `{model}`, `{runs}`, `{warmup}`, `{threads}` and `{min_seconds}` are
    filled in, e.g.
    `cmd:ssh pi@board ./benchmark_model --graph={model} --num_runs={runs}` (copy the model
    first in your own script if the board needs it). Its output may be benchmark_model's, or
    any text with `median_ms=X` or `X ms` (the last such number is taken as the median).
    """

    def __init__(self, template: str, threads: int = 1, timeout: float = 600) -> None:
        import shlex

        try:
            self.argv = shlex.split(template)
        except ValueError as err:
            raise TfnasError(f"bad command template {template!r}: {err}") from None
        if not self.argv or "{model}" not in template:
            raise TfnasError(f"the command template must contain {{model}}: {template!r}")
        self.template, self.threads, self.timeout = template, threads, timeout
        self.name = f"cmd:{self.argv[0]}"

    def check(self) -> None:
        import shutil

        if shutil.which(self.argv[0]) is None:
            raise TfnasError(f"command {self.argv[0]!r} of --device=cmd:... not found")

    def benchmark(self, model_path: str | Path, *, runs: int = 100, warmup: int = 10,
                  min_seconds: float = 0.0) -> BenchmarkResult:
        _check_counts(runs, warmup)
        read_model_file(model_path)
        self.check()
        values = {"model": str(model_path), "runs": runs, "warmup": warmup,
                  "threads": self.threads, "min_seconds": f"{min_seconds:g}"}
        argv = [arg.format(**values) for arg in self.argv]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise TfnasError(f"{self.argv[0]} timed out after {self.timeout:.0f} s") from None
        if done.returncode != 0:
            raise TfnasError(f"{self.argv[0]} failed (exit {done.returncode}): "
                             f"{first_line(done.stderr or done.stdout)}")
        if _COUNT_RE.search(done.stdout):
            return parse_benchmark_model(done.stdout)
        found = _MS_RE.findall(done.stdout)
        if not found:
            raise TfnasError(f"no latency in the output of {self.argv[0]} (expected "
                             f"'median_ms=X' or 'X ms'): {first_line(done.stdout)!r}")
        value = float(next(x for x in found[-1] if x))
        return BenchmarkResult(value, value, 0.0, value, value, runs, p10_ms=value)

    def benchmark_many(self, model_paths: Sequence[str | Path], *, runs: int = 100,
                       warmup: int = 10, min_seconds: float = 0.0) -> list[BenchmarkResult]:
        return [self.benchmark(path, runs=runs, warmup=warmup, min_seconds=min_seconds)
                for path in model_paths]

    def describe(self) -> dict[str, Any]:
        return {"device": self.name, "kind": "cmd", "command": self.template,
                "runtime": "external command", "threads": self.threads}


DEVICE_KINDS = ("local", "adb:SERIAL", "cmd:TEMPLATE")


def parse_device(spec: str, *, threads: int = 1, delegate: str | None = None) -> Device:
    """A device from its command-line spec: `local`, `adb:SERIAL` or `cmd:TEMPLATE`."""
    kind, _, rest = spec.partition(":")
    if spec == "local":
        return LocalDevice(threads=threads)
    if kind == "adb" and rest:
        return AdbDevice(rest, threads=threads, delegate=delegate)
    if kind == "cmd" and rest:
        return CommandDevice(rest, threads=threads)
    raise TfnasError(f"unknown device {spec!r}: expected one of {', '.join(DEVICE_KINDS)}")
