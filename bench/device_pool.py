"""Profiling on a pool of devices: wall time against one device, rows measured once each, a
device of another kind detected.

    python bench/device_pool.py [--space=tiny] [--calibration_archs=4] [--out=runs/device_pool]

Builds the space's latency table three times with `tools/build_lut.py`, on fake `cmd:`
devices that time each model with this host's LiteRT interpreter (`tests/fake_device.py`):
one device; a pool of two devices of one speed; a pool whose second device reports 2x the
latency (another phone model). Prints each build's wall time and its ratio to one device,
how many times each row was timed and on how many devices (from the fake devices' log), how
far the pool's rows are from the one device's, and what the pool said about the slow device.
The two fake devices share this host's cores (2 here): a pool of real phones has no such
contention. Nothing is asserted: report what it prints.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import flags

from tfnas import cli

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("space", "tiny", "Search space whose table is built.")
flags.DEFINE_integer("calibration_archs", 4, "Whole networks measured to calibrate it.")
flags.DEFINE_integer("runs", 20, "Timed runs per model and call.")
flags.DEFINE_float("min_seconds", 0.2, "Each call times a model for at least this long.")
flags.DEFINE_string("out", "runs/device_pool", "Output folder.")


def fake(name: str, factor: float) -> str:
    return (f"cmd:{sys.executable} {ROOT / 'tests' / 'fake_device.py'} {{model}} {{runs}} "
            f"{{warmup}} {{min_seconds}} {name} {factor:g}")


def build(label: str, devices: list[str], out: Path) -> dict:
    table, log = out / f"{label}.json", out / f"{label}.log"
    for path in (table, log):
        path.unlink(missing_ok=True)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_lut.py"), f"--space={FLAGS.space}",
         f"--device={','.join(devices)}", f"--runs={FLAGS.runs}",
         f"--min_seconds={FLAGS.min_seconds}",
         f"--calibration_archs={FLAGS.calibration_archs}", f"--out={table}"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "FAKE_DEVICE_LOG": str(log)})
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{label}: build_lut failed: {done.stderr[-2000:]}")
    calls = [line.split() for line in log.read_text().splitlines()]
    return {"seconds": seconds, "rows": json.loads(table.read_text())["rows"],
            "calls": calls, "said": [line for line in done.stderr.splitlines()
                                     if line.startswith("device pool")]}


def main(argv: list[str]) -> None:
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {"one device": build("one", [fake("A", 1)], out),
            "pool of two": build("two", [fake("A", 1), fake("B", 1)], out),
            "pool, second 2x slower": build("slow", [fake("A", 1), fake("S", 2)], out)}
    base = runs["one device"]
    print(f"{FLAGS.space}: {len(base['rows'])} table rows, {FLAGS.calibration_archs} "
          "calibration networks\n")
    print(f"{'build':24s} {'wall s':>7s} {'vs one':>7s} {'calls':>6s} {'by device':>18s} "
          f"{'models timed on 2 devices':>26s} {'rows vs one device':>20s}")
    for label, run in runs.items():
        calls = run["calls"]
        by_device = collections.Counter(name for name, _ in calls)
        devices_of = collections.defaultdict(set)
        for name, digest in calls:
            devices_of[digest].add(name)
        reference = collections.Counter(d for _, d in calls).most_common(1)[0][0]
        shared = sum(1 for d, names in devices_of.items() if len(names) > 1 and d != reference)
        keys = [k for k in base["rows"] if base["rows"][k] > 0]
        diff = np.array([run["rows"][k] / base["rows"][k] - 1 for k in keys])
        print(f"{label:24s} {run['seconds']:7.1f} {run['seconds'] / base['seconds']:7.2f} "
              f"{len(calls):6d} {json.dumps(dict(by_device)):>18s} {shared:26d} "
              f"{'median %+.1f%%, max %.1f%%' % (np.median(diff) * 100, np.abs(diff).max() * 100):>20s}")
        for line in run["said"]:
            print(f"    {line}")


if __name__ == "__main__":
    cli.run(main)
