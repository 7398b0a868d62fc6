"""Do the hand-written timing graphs of DARTS cell networks time like the converter's?

    python bench/cell_timing_models.py [--networks=12] [--cells=8] [--init_channels=16]

For `--networks` random networks of `darts28` cells (half of them `mixed`: each cell with its own
share of parameter-free ops, as latency searches return), builds the .tflite twice: the TFLite
converter's graph of the Keras network (`tfnas.deploy.export.to_tflite`, weights drawn at
random so no batch-norm offset is zero, as in a trained network) and the hand-written one
(`tfnas.latency.timing_models.network`); prints the seconds each takes to build and the ratio
written / converted of their latencies, timed side by side on this host (local, 1 thread, in
groups of 2 with the reference network, the median of 3 passes). Nothing is asserted.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("networks", 12, "Random networks to compare.")
flags.DEFINE_integer("cells", 8, "Cells of the network.")
flags.DEFINE_integer("init_channels", 16, "C of the first cells.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")


def main(argv: list[str]) -> None:
    from tfnas import nets
    from tfnas.deploy.export import to_tflite
    from tfnas.latency.devices import LocalDevice
    from tfnas.latency.meter import Meter, default_reference
    from tfnas.latency.timing_models import network as written_network
    from tfnas.space.cells import CellArchitecture, get_network

    network = get_network("darts28", cells=FLAGS.cells, init_channels=FLAGS.init_channels)
    rng = np.random.default_rng(FLAGS.seed)
    archs = [CellArchitecture.sample(network, rng, sampling="mixed" if i % 2 else "uniform")
             for i in range(FLAGS.networks)]
    models, seconds = [], {"converted": [], "written": []}
    for arch in archs:
        start = time.perf_counter()
        model = nets.build(arch)
        for var in model.weights:
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32))
        models.append(to_tflite(model))
        seconds["converted"].append(time.perf_counter() - start)
        start = time.perf_counter()
        models.append(written_network(arch))
        seconds["written"].append(time.perf_counter() - start)
        print(f"built {len(models) // 2}/{len(archs)}", file=sys.stderr)
    for name, values in seconds.items():
        print(f"{name:9s} build: median {np.median(values):.2f} s per network")
    meter = Meter(LocalDevice(threads=1), reference=default_reference(network))
    ms = np.array(meter.measure(models)).reshape(-1, 2)
    ratio = ms[:, 1] / ms[:, 0]
    print("network  converted_ms  written_ms  ratio")
    for i, (c, w) in enumerate(ms):
        print(f"{i:7d}  {c:12.3f}  {w:10.3f}  {w / c:.3f}")
    print(f"written / converted: median {np.median(ratio):.3f}, range {ratio.min():.3f} to "
          f"{ratio.max():.3f}; median |1 - ratio| {np.median(np.abs(1 - ratio)) * 100:.2f}%")


if __name__ == "__main__":
    app.run(main)
