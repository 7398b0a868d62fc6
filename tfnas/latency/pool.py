"""Several devices of one model timing one job's models in parallel: `--device=A,B,...`.

A latency table or a predictor's dataset takes hours on one phone; several phones of the same
model (or boards, or `cmd:` hosts) share the work. `parse_devices` reads a pool from a device
spec with several devices, comma-separated (`adb:A,adb:B`; a comma inside a `cmd:` template
stays in it unless `local`, `adb:` or `cmd:` follows it), or from a file (`@devices.txt`: one
spec per line, `#` comments).

`DevicePool.measure_with(meter, models, on_value)` (what `Meter.measure` does on a pool):

1. Agreement, once per pool: every device times the meter's reference network (or the job's
   first model) alone, one after another; a device whose time differs from the first
   device's by more than `tolerance` (10%) is not the same kind of device (another model,
   another thread count, a throttled or busy unit) and is left out, with one line saying by
   how much. Values are normalised by each device's own reference timing
   (`tfnas.latency.meter`), which would hide a uniformly slower device: this check is what
   keeps it out of the rows.
2. The units are set once (the reference's latency, timed on the first device, unless the
   table or dataset being completed already has it), then each device takes the next unit
   of work (a group of models, or an anchored chunk) from one queue, with its own Meter: its
   own drift correction against the reference and its own anchors.
3. Values come back to the caller's thread in the order they finish, with their index, so
   `on_value` (a table row written to disk) runs in one thread. A device that fails (unplugged,
   crashed, timed out) is dropped with one line: its unfinished unit goes back to the queue and
   the others finish the job; rows it finished are kept. Only when every device has dropped
   out does the job stop, with the last error.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import statistics
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from tfnas.errors import TfnasError, error_line, missing_file
from tfnas.latency.devices import BenchmarkResult, Device, parse_device

_KIND = re.compile(r"\s*(local\b|adb:|cmd:)")  # how a device spec starts


def device_specs(spec: str) -> list[str]:
    """The device specs of a `--device` value: one spec, several comma-separated, or @FILE."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise missing_file(path, "devices file", "--device=@FILE: one device spec a line")
        specs = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        specs = [s for s in specs if s]
        if not specs:
            raise TfnasError(f"{path} names no device (one spec per line: local, adb:SERIAL, "
                             "cmd:TEMPLATE)")
        return specs
    specs: list[str] = []
    for piece in spec.split(","):  # a comma inside a cmd: template stays in it
        if specs and specs[-1].startswith("cmd:") and not _KIND.match(piece):
            specs[-1] += "," + piece
        else:
            specs.append(piece.strip())
    return specs


def parse_devices(spec: str, *, threads: int = 1, delegate: str | None = None) -> Any:
    """One device, or a DevicePool of several (see the module doc)."""
    specs = device_specs(spec)
    devices = [parse_device(s, threads=threads, delegate=delegate) for s in specs]
    if len(devices) == 1:
        return devices[0]
    names = [d.describe()["device"] for d in devices]
    twice = sorted({n for n in names if names.count(n) > 1 and not n.startswith("cmd:")})
    if twice:
        raise TfnasError(f"--device names {twice[0]} twice: a pool's devices time models at "
                         "the same time, each must be its own device")
    return DevicePool(tuple(devices))


@dataclasses.dataclass
class DevicePool:
    """Devices of one model measuring in parallel (see the module doc)."""

    devices: tuple[Device, ...]
    tolerance: float = 0.10  # largest relative difference of a device's reference time
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    agreeing: list[int] | None = None  # indices of the devices kept (set by the check)
    ratios: list[float] = dataclasses.field(default_factory=list)  # reference time / first's

    @property
    def name(self) -> str:
        return self.devices[0].describe()["device"]

    def labels(self) -> list[str]:
        """Each device's name; numbered (#1, #2...) when names repeat (`cmd:` devices are
        named by their program)."""
        names = [d.describe()["device"] for d in self.devices]
        return [f"{n} #{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    def check(self) -> None:
        for device in self.devices:
            device.check()

    def describe(self) -> dict[str, Any]:
        """The first device's description (a table joins the pool's first device), and the
        pool: each device, its reference ratio, whether it was kept."""
        info = dict(self.devices[0].describe())
        info["pool"] = [{"device": d.describe()["device"],
                         **({"reference_ratio": round(self.ratios[i], 4),
                             "kept": i in (self.agreeing or [])} if self.ratios else {})}
                        for i, d in enumerate(self.devices)]
        return info

    def benchmark_many(self, model_paths: Sequence[str | Path], **kwargs: Any
                       ) -> list[BenchmarkResult]:
        """Times models on the first kept device (a Meter's plain timing; `measure_with` is the
        parallel path)."""
        return self.devices[(self.agreeing or [0])[0]].benchmark_many(model_paths, **kwargs)

    def benchmark(self, model_path: str | Path, **kwargs: Any) -> BenchmarkResult:
        return self.benchmark_many([model_path], **kwargs)[0]

    # --- the parallel path ------------------------------------------------------------------

    def agree(self, meter: Any, fallback: bytes) -> list[int]:
        """Times the meter's reference network (without one, the `fallback` model) on every
        device, three rounds round-robin; keeps those within `tolerance` of the first (once
        per pool)."""
        if self.agreeing is not None:
            return self.agreeing
        model = meter.model_of(meter.reference) if meter.reference is not None else fallback
        # no drift correction (the raw time is what is compared), at least half a second
        # of runs, three rounds (the median of each device's three)
        plain = [dataclasses.replace(meter, device=d, reference=None, anchors=(),
                                     anchor_scales=[], repeats=1, runs=max(meter.runs, 20),
                                     min_seconds=max(meter.min_seconds, 0.5))
                 for d in self.devices]
        rounds: list[list[float]] = [[] for _ in self.devices]
        errors: list[str] = [""] * len(self.devices)
        # one after another (devices behind one host, cmd: wrappers, would slow each other),
        # round-robin: a slow spell of the host falls on every device, not on one
        for _ in range(3):
            for i, timed in enumerate(plain):
                if errors[i]:
                    continue
                try:
                    rounds[i].append(timed._measure([model])[0])
                except Exception as err:  # a device that cannot run: reported below
                    errors[i] = error_line(err)
        times: list[float | None] = [None if errors[i] else statistics.median(r)
                                     for i, r in enumerate(rounds)]
        names = self.labels()
        if times[0] is None:
            raise TfnasError(f"the pool's first device {names[0]} failed: {errors[0]}")
        self.ratios = [t / times[0] if t is not None else float("nan") for t in times]
        self.agreeing = []
        for i, (name, ratio) in enumerate(zip(names, self.ratios)):
            if times[i] is None:
                self.say(f"device pool: {name} failed ({errors[i]}): left out")
            elif abs(ratio - 1) > self.tolerance:
                self.say(f"device pool: {name} times the reference network {ratio:.2f}x the "
                         f"first device's ({names[0]}), beyond ±{self.tolerance:.0%}: not the "
                         "same kind of device (model, threads, throttling?); left out")
            else:
                self.agreeing.append(i)
        kept = ", ".join(f"{names[i]} {self.ratios[i]:.3f}x" for i in self.agreeing)
        self.say(f"device pool: {len(self.agreeing)} of {len(self.devices)} devices agree "
                 f"(reference time against the first: {kept})")
        return self.agreeing

    def measure_with(self, meter: Any, models: Sequence[bytes],
                     on_value: Callable[[int, float, BenchmarkResult], None] | None = None
                     ) -> list[float]:
        """`meter.measure(models, on_value)` spread over the kept devices."""
        if not models:
            return []
        kept = self.agree(meter, models[0])
        names = [self.labels()[i] for i in kept]
        meters = [dataclasses.replace(meter, device=self.devices[i], anchor_scales=[],
                                      last_anchoring=None)  # each device times its anchors
                  for i in kept]
        if meter.reference is not None and meter.reference_ms is None:  # the units: once
            meters[0]._measure([])
            meter.reference_ms = meters[0].reference_ms
            for m in meters:
                m.reference_ms = meter.reference_ms
        size = meter.anchor_every if meter.anchors else meter.group
        work: queue.Queue = queue.Queue()
        for start in range(0, len(models), size):
            work.put(list(range(start, min(start + size, len(models)))))
        done: queue.Queue = queue.Queue()  # (index, ms, raw), or (None, device, error)
        values: list[float | None] = [None] * len(models)

        def run(k: int) -> None:
            while True:
                try:
                    unit = work.get_nowait()
                except queue.Empty:
                    done.put((None, k, None))
                    return
                unit = [i for i in unit if values[i] is None]
                try:
                    meters[k].measure([models[i] for i in unit], lambda j, ms, raw: done.put(
                        (unit[j], ms, raw)))
                except Exception as err:  # dropped out: the unit goes back to the others
                    work.put(unit)
                    done.put((None, k, err))
                    return

        def start(k: int) -> None:
            running.add(k)
            threading.Thread(target=run, args=(k,), daemon=True).start()

        running: set[int] = set()
        idle: set[int] = set()
        for k in range(len(meters)):
            start(k)
        remaining = len(models)
        while remaining:
            index, ms, raw = done.get()
            if index is None:  # a device ended: out of work (raw None) or failed
                k, err = ms, raw
                running.discard(k)
                if err is None:
                    idle.add(k)
                else:
                    self.say(f"device pool: {names[k]} dropped out ({error_line(err)}); the "
                             "other devices take its models")
                if not work.empty():  # a failed device's unit came back: idle ones take it
                    for k in sorted(idle):
                        idle.discard(k)
                        start(k)
                if not running:
                    raise TfnasError(f"every device of the pool dropped out; the last: "
                                     f"{error_line(err)} (values measured so far are kept: "
                                     "the same command resumes)")
                continue
            if values[index] is None:
                values[index] = ms
                remaining -= 1
                if on_value:
                    on_value(index, ms, raw)
        for m in meters:
            meter.anchor_scales.extend(m.anchor_scales)
        return [float(v) for v in values]  # type: ignore[arg-type]
