"""Profile a search space on a device into a latency table (LUT).

    python tools/build_lut.py --space=single_path --device=local --threads=1 --out=lut.json

One small model per distinct layer signature (plus the stem and the head) is written as a
.tflite and timed (interleaved with a reference network to cancel host drift; see
tfnas/latency/meter.py); then `--calibration_archs` whole networks are measured and a linear
correction of the sum of rows is fitted and stored (the sum of isolated layers misses
whole-network latency). The table is saved after every row and network, so an interrupted run
continues where it stopped when started again with the same --out.
"""

from __future__ import annotations

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
cli.define_space_flags()
cli.define_measurement_flags()
flags.DEFINE_integer("calibration_archs", 16, "Whole networks measured to calibrate the sum of "
                     "rows (0: none).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the calibration networks.")
flags.DEFINE_string("out", None, "The table (JSON); an existing one is completed.")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    from tfnas.latency.profiler import calibrate, profile
    from tfnas.run.rundir import check_output

    check_output(FLAGS.out, "--out")
    space = cli.space_from_flags(FLAGS)
    meter = cli.meter_from_flags(FLAGS, space)
    table = profile(space, meter, FLAGS.out)
    table = calibrate(table, space, meter, FLAGS.out, num_archs=FLAGS.calibration_archs,
                      seed=FLAGS.seed)
    fit = (f"; calibration on {len(table.calibration['measured_ms'])} networks: measured = "
           f"{table.scale:.4f} x sum of rows + {table.offset:.4g} ms + {table.per_layer:.4g} ms "
           "per MBConv layer" if table.calibrated else "")
    print(f"{FLAGS.out}: {len(table.rows)} rows, fixed part {table.fixed_ms:.3f} ms "
          f"(device {table.device.get('device')}, {table.device.get('threads')} thread(s)){fit}")


if __name__ == "__main__":
    cli.run(main)
