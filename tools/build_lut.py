"""Profile a search space on a device into a latency table (LUT).

    python tools/build_lut.py --space=single_path --device=local --threads=1 --out=lut.json

One small model per distinct layer signature (plus the stem and the head) is exported to
TFLite and timed; then `--calibration_archs` whole networks are measured and a linear
correction of the sum of rows is fitted and stored (the sum of isolated layers misses
whole-network latency). The table is saved after every row and network, so an interrupted run
continues where it stopped when started again with the same --out.
"""

from __future__ import annotations

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "tiny", "Search space preset.")
flags.DEFINE_integer("input_size", None, "Override the space's input size.")
flags.DEFINE_float("width_multiplier", None, "Override the space's width multiplier.")
flags.DEFINE_integer("num_classes", None, "Override the space's number of classes.")
flags.DEFINE_string("device", "local", "Where to measure: local (this host, LiteRT) or "
                    "adb:SERIAL (Android phone, benchmark_model) or cmd:TEMPLATE.")
flags.DEFINE_enum("delegate", None, ["gpu", "nnapi"], "adb devices: GPU or NNAPI delegate.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
flags.DEFINE_integer("runs", 50, "Timed runs per row (the median is stored).", lower_bound=1)
flags.DEFINE_integer("warmup", 5, "Untimed runs before timing.", lower_bound=0)
flags.DEFINE_integer("calibration_archs", 8, "Whole networks measured to calibrate the sum of "
                     "rows (0: none).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the calibration networks.")
flags.DEFINE_string("out", None, "The table (JSON); an existing one is completed.")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    from tfnas.latency.devices import parse_device
    from tfnas.latency.profiler import calibrate, profile
    from tfnas.space import get_space

    space = get_space(FLAGS.space, input_size=FLAGS.input_size,
                      width_multiplier=FLAGS.width_multiplier, num_classes=FLAGS.num_classes)
    device = parse_device(FLAGS.device, threads=FLAGS.threads, delegate=FLAGS.delegate)
    table = profile(space, device, FLAGS.out, runs=FLAGS.runs, warmup=FLAGS.warmup)
    table = calibrate(table, space, device, FLAGS.out, num_archs=FLAGS.calibration_archs,
                      seed=FLAGS.seed, runs=FLAGS.runs, warmup=FLAGS.warmup)
    fit = (f"; calibration on {len(table.calibration['measured_ms'])} networks: measured = "
           f"{table.scale:.4f} x sum of rows + {table.offset:.3f} ms" if table.calibrated else "")
    print(f"{FLAGS.out}: {len(table.rows)} rows, fixed part {table.fixed_ms:.3f} ms "
          f"(device {table.device.get('device')}, {table.device.get('threads')} thread(s)){fit}")


if __name__ == "__main__":
    cli.run(main)
