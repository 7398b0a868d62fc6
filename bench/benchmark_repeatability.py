"""How repeatable is a host latency median? Times one model in separate benchmark processes.

    python bench/benchmark_repeatability.py [--space=single_path] [--op=mbconv_k3_e6]
        [--repeats=3] [--runs=500]

Exports the uniform network of the space (MobileNetV2-like by default), runs
`tools/benchmark.py --json` `--repeats` times one after another, and prints each median and
min, and the spread max/min - 1 of each statistic across the repeats.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "single_path", "Search space preset.")
flags.DEFINE_string("op", "mbconv_k3_e6", "Op of every layer.")
flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "int8"], "Export quantization.")
flags.DEFINE_integer("repeats", 3, "Separate benchmark processes.")
flags.DEFINE_integer("runs", 500, "Timed runs per process.")

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def main(argv: list[str]) -> None:
    from tfnas import export, nets
    from tfnas.space import Architecture, get_space

    arch = Architecture.uniform(get_space(FLAGS.space), FLAGS.op)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "net.tflite"
        path.write_bytes(export.to_tflite(
            nets.build(arch), quantize=FLAGS.quantize, arch=arch,
            representative_data=export.representative_inputs(
                (arch.space.input_size, arch.space.input_size, arch.space.input_channels))))
        print(f"{FLAGS.space} uniform {FLAGS.op}: {arch.params():,} params, "
              f"{arch.flops() / 1e6:.0f} MFLOPs, {FLAGS.quantize}, {FLAGS.runs} runs x "
              f"{FLAGS.repeats} processes")
        rows = []
        for i in range(FLAGS.repeats):
            out = subprocess.run(
                [sys.executable, str(TOOLS / "benchmark.py"), f"--model={path}",
                 f"--runs={FLAGS.runs}", "--warmup=20", "--json"],
                capture_output=True, text=True, check=True)
            row = json.loads(out.stdout)["models"][0]
            rows.append(row)
            print(f"repeat {i + 1}: median {row['median_ms']:.3f} ms  min {row['min_ms']:.3f} ms"
                  f"  p90 {row['p90_ms']:.3f} ms")
    for key in ("median_ms", "min_ms", "p90_ms"):
        values = [row[key] for row in rows]
        print(f"{key}: max/min = {max(values) / min(values):.4f} "
              f"(spread {100 * (max(values) / min(values) - 1):.2f}%)")


if __name__ == "__main__":
    cli.run(main)
