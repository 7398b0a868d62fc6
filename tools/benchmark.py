"""Time .tflite models on a device: `python tools/benchmark.py --model=a.tflite --json`.

Several `--model` flags are timed in the same run, interleaved a few runs at a time, so their
medians can be compared as ratios: host drifts hit every model alike. `--json` prints one
JSON object on stdout:
`{"device": {...}, "models": [{"model", "median_ms", "mean_ms", "std_ms", "p90_ms",
"min_ms", "runs", "size_bytes", "params", "flops"}]}` (params/flops when the .tflite carries
its architecture).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("model", None, ".tflite model to time (repeat the flag for more).")
flags.DEFINE_string("device", "local", "Where to run: local (this host, LiteRT interpreter) or "
                    "adb:SERIAL (Android, TFLite benchmark_model) or cmd:TEMPLATE (any command).")
flags.DEFINE_enum("delegate", None, ["gpu", "nnapi"], "adb devices: GPU or NNAPI delegate.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
flags.DEFINE_integer("runs", 100, "Timed runs per model (the median is reported).",
                     lower_bound=1)
flags.DEFINE_integer("warmup", 10, "Untimed runs before timing.", lower_bound=0)
flags.DEFINE_bool("json", False, "Print JSON on stdout instead of a table.")
flags.mark_flag_as_required("model")


def main(argv: list[str]) -> None:
    from tfnas.deploy.export import read_architecture
    from tfnas.latency.devices import parse_device

    device = parse_device(FLAGS.device, threads=FLAGS.threads, delegate=FLAGS.delegate)
    archs = [read_architecture(path) for path in FLAGS.model]  # check all before timing any
    device.check()
    if not FLAGS.json:
        print(f"timing {len(FLAGS.model)} model(s) on {device.name}, {FLAGS.runs} runs each...",
              file=sys.stderr, flush=True)
    results = device.benchmark_many(FLAGS.model, runs=FLAGS.runs, warmup=FLAGS.warmup)
    rows = []
    for path, arch, result in zip(FLAGS.model, archs, results):
        rows.append({"model": path, **result.to_dict(), "size_bytes": Path(path).stat().st_size,
                     "params": arch.params() if arch else None,
                     "flops": arch.flops() if arch else None})
    if FLAGS.json:
        print(json.dumps({"device": device.describe(), "models": rows}, indent=1))
        return
    base = rows[0]["median_ms"]
    print(f"device {device.name}, {FLAGS.threads} thread(s), {FLAGS.runs} runs each")
    print(f"{'model':40s} {'median ms':>10s} {'p90 ms':>8s} {'std ms':>8s} {'x first':>8s}"
          f" {'MB':>6s}")
    for row in rows:
        print(f"{row['model'][-40:]:40s} {row['median_ms']:10.4g} {row['p90_ms']:8.4g} "
              f"{row['std_ms']:8.4g} {row['median_ms'] / base:8.3f} "
              f"{row['size_bytes'] / 1e6:6.2f}")


if __name__ == "__main__":
    cli.run(main)
