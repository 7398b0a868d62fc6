"""Devices that run a .tflite model and time it.

Every device has one interface: `benchmark(model_path, runs=, warmup=)` returns a
`BenchmarkResult` (median, mean, standard deviation, p90, min over `runs` timed invocations
after `warmup` untimed ones), and `describe()` returns metadata for latency tables.

`LocalDevice` times the LiteRT interpreter (`ai_edge_litert`, XNNPACK on CPU) on this host.
Device specs as used on command lines: `local` (see `parse_device`).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from tfnas.errors import TfnasError


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Latency statistics of one model on one device, in milliseconds."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p90_ms: float
    min_ms: float
    runs: int

    @classmethod
    def from_samples(cls, samples_ms: Any) -> "BenchmarkResult":
        times = np.asarray(samples_ms, np.float64)
        if times.size == 0:
            raise TfnasError("no timing samples")
        return cls(median_ms=float(np.median(times)), mean_ms=float(times.mean()),
                   std_ms=float(times.std()), p90_ms=float(np.percentile(times, 90)),
                   min_ms=float(times.min()), runs=int(times.size))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Device(Protocol):
    """What the profiler and the tools need of a device.

    `benchmark_many` times several models for comparison; a device that can hold them all at
    once interleaves them, so slow drifts of the host hit every model alike and their ratios
    stay stable.
    """

    name: str

    def benchmark(self, model_path: str | Path, *, runs: int = 100,
                  warmup: int = 10) -> BenchmarkResult: ...

    def benchmark_many(self, model_paths: Sequence[str | Path], *, runs: int = 100,
                       warmup: int = 10) -> list[BenchmarkResult]: ...

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

    def load(self, model_path: str | Path) -> Any:
        """A ready LiteRT interpreter for the model, or a clear error."""
        from ai_edge_litert.interpreter import Interpreter

        from tfnas.export import read_model_file
        from tfnas.quiet import captured_output

        data = read_model_file(model_path)  # missing file / not TFLite: one clear line
        try:
            with captured_output():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                interpreter = Interpreter(model_content=data, num_threads=self.threads)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TfnasError(f"LiteRT could not load {model_path}: {first}") from None
        return interpreter

    def benchmark(self, model_path: str | Path, *, runs: int = 100,
                  warmup: int = 10) -> BenchmarkResult:
        return self.benchmark_many([model_path], runs=runs, warmup=warmup)[0]

    def benchmark_many(self, model_paths: Sequence[str | Path], *, runs: int = 100,
                       warmup: int = 10, chunk: int = 5) -> list[BenchmarkResult]:
        """Loads every model, then times them round-robin, `chunk` runs of each per turn."""
        _check_counts(runs, warmup)
        interpreters = [self.load(path) for path in model_paths]
        rng = np.random.default_rng(0)
        for interpreter in interpreters:
            for detail in interpreter.get_input_details():
                interpreter.set_tensor(detail["index"], _random_input(detail, rng))
            for _ in range(warmup):
                interpreter.invoke()
        samples = np.empty((len(interpreters), runs))
        clock = time.perf_counter
        for start_run in range(0, runs, chunk):
            for row, interpreter in enumerate(interpreters):
                for i in range(start_run, min(start_run + chunk, runs)):
                    start = clock()
                    interpreter.invoke()
                    samples[row, i] = (clock() - start) * 1e3
        return [BenchmarkResult.from_samples(row) for row in samples]

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"device": self.name, "kind": "local", "runtime": "ai-edge-litert "
                + version("ai-edge-litert"), "threads": self.threads,
                "machine": platform.machine(), "processor": platform.processor()}


DEVICE_KINDS = ("local",)


def parse_device(spec: str, *, threads: int = 1) -> Device:
    """A device from its command-line spec: `local`."""
    kind = spec.split(":", 1)[0]
    if kind == "local":
        return LocalDevice(threads=threads)
    raise TfnasError(f"unknown device {spec!r}: expected one of {', '.join(DEVICE_KINDS)}")
