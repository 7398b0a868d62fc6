"""How repeatable are host latencies? Absolute medians vs ratios of models timed together.

    python bench/benchmark_repeatability.py [--space=single_path] [--op=mbconv_k3_e6]
        [--compare_seed=1] [--repeats=3] [--runs=500]

Exports the uniform network of the space (MobileNetV2-like by default) and a random network
of the same space, runs `tools/benchmark.py --json` on both (interleaved) `--repeats` times in
separate processes, and prints each median, the ratio of the two, and the spread
(max/min - 1) of the medians and of the ratio across repeats.
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
flags.DEFINE_string("op", "mbconv_k3_e6", "Op of every layer of the reference network.")
flags.DEFINE_integer("compare_seed", 1, "Seed of the random network timed beside it.")
flags.DEFINE_enum("quantize", "none", ["none", "dynamic", "int8"], "Export quantization.")
flags.DEFINE_integer("repeats", 3, "Separate benchmark processes.")
flags.DEFINE_integer("runs", 500, "Timed runs per model and process.")

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _spread(values: list[float]) -> str:
    ratio = max(values) / min(values)
    return f"max/min {ratio:.4f} (spread {100 * (ratio - 1):.2f}%)"


def main(argv: list[str]) -> None:
    from tfnas.deploy import export
    from tfnas import nets
    from tfnas.space import Architecture, get_space

    space = get_space(FLAGS.space)
    archs = {"uniform": Architecture.uniform(space, FLAGS.op),
             "random": Architecture.sample(space, FLAGS.compare_seed)}
    shape = (space.input_size, space.input_size, space.input_channels)
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, arch in archs.items():
            paths[name] = Path(folder) / f"{name}.tflite"
            paths[name].write_bytes(export.to_tflite(
                nets.build(arch), quantize=FLAGS.quantize, arch=arch,
                representative_data=export.representative_inputs(shape)))
            print(f"{name}: {FLAGS.space}, {arch.params():,} params, "
                  f"{arch.flops() / 1e6:.0f} MFLOPs, {FLAGS.quantize}")
        print(f"{FLAGS.runs} runs per model, interleaved, in {FLAGS.repeats} processes")
        medians = {name: [] for name in archs}
        ratios = []
        for i in range(FLAGS.repeats):
            out = subprocess.run(
                [sys.executable, str(TOOLS / "benchmark.py"), f"--runs={FLAGS.runs}",
                 "--warmup=20", "--json", *(f"--model={p}" for p in paths.values())],
                capture_output=True, text=True, check=True)
            rows = json.loads(out.stdout)["models"]
            for name, row in zip(archs, rows):
                medians[name].append(row["median_ms"])
            ratios.append(rows[1]["median_ms"] / rows[0]["median_ms"])
            print(f"repeat {i + 1}: uniform {rows[0]['median_ms']:.3f} ms, random "
                  f"{rows[1]['median_ms']:.3f} ms, random/uniform {ratios[-1]:.4f}")
    for name, values in medians.items():
        print(f"{name} median: {_spread(values)}")
    print(f"ratio random/uniform: {_spread(ratios)}")


if __name__ == "__main__":
    cli.run(main)
