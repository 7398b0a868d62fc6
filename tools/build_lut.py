"""Profile a search space on a device into a latency table (LUT).

    python tools/build_lut.py --space=single_path --device=local --threads=1 --out=lut.json

One small model per distinct layer signature (plus the stem and the head) is written as a
.tflite and timed (interleaved with a reference network to cancel host drift; see
tfnas/latency/meter.py); then `--calibration_archs` whole networks are measured and a linear
correction of the sum of rows is fitted and stored (the sum of isolated layers misses
whole-network latency). The table is saved after every row and network, so an interrupted run
continues where it stopped when started again with the same --out.

On a network of DARTS cells (`--space=darts28`, ...; `--cells`, `--init_channels`, `--nodes`)
the table is per edge (tfnas/latency/cell_table.py): every distinct edge op timed alone, the
network of skip-connection cells timed whole, and the calibration fitted on random derived
networks, or with `--calibration_dataset` on a latency dataset's networks (tools/
train_predictor.py writes one), whose units the table then takes:

    python tools/build_lut.py --space=darts28 --cells=8 --init_channels=16 --device=local \
        --calibration_dataset=lpm.dataset.json --out=cell_lut.json
"""

from __future__ import annotations

from typing import Any

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
cli.define_space_flags()
cli.define_cell_flags()
cli.define_measurement_flags()
cli.define_cell_sampling_flags()
flags.DEFINE_string("calibration_dataset", None, "Cell networks: calibrate on this latency "
                    "dataset's networks (in its units) instead of measuring new ones.")
flags.DEFINE_integer("calibration_archs", 16, "Whole networks measured to calibrate the sum of "
                     "rows (0: none).", lower_bound=0)
flags.DEFINE_integer("seed", 0, "Seed of the calibration networks.")
flags.DEFINE_string("out", None, "The table (JSON); an existing one is completed.")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    from tfnas.latency.profiler import calibrate, profile
    from tfnas.run.rundir import check_output

    from tfnas.errors import TfnasError
    from tfnas.space.cells import is_cell_network

    check_output(FLAGS.out, "--out")
    space = cli.search_space_from_flags(FLAGS)
    if is_cell_network(space):
        return _cell_table(space)
    if FLAGS.calibration_dataset or FLAGS.nodes != 4 or FLAGS.cell_sampling != "uniform":
        raise TfnasError(f"--calibration_dataset, --nodes and --cell_sampling are for networks "
                         f"of DARTS cells, not the {space.name} layer space")
    meter = cli.meter_from_flags(FLAGS, space)
    table = profile(space, meter, FLAGS.out)
    table = calibrate(table, space, meter, FLAGS.out, num_archs=FLAGS.calibration_archs,
                      seed=FLAGS.seed)
    fit = (f"; calibration on {len(table.calibration['measured_ms'])} networks: measured = "
           f"{table.scale:.4f} x sum of rows + {table.offset:.4g} ms + {table.per_layer:.4g} ms "
           "per MBConv layer" if table.calibrated else "")
    print(f"{FLAGS.out}: {len(table.rows)} rows, fixed part {table.fixed_ms:.3f} ms "
          f"(device {table.device.get('device')}, {table.device.get('threads')} thread(s)){fit}")


def _cell_table(network: Any) -> None:
    from tfnas.errors import TfnasError
    from tfnas.latency import cell_table, measured

    meter = cli.meter_from_flags(FLAGS, network)
    archs, ms = None, None
    if FLAGS.calibration_dataset:
        archs, ms, record = measured.load(FLAGS.calibration_dataset, network)
        if not archs:
            raise TfnasError(f"--calibration_dataset={FLAGS.calibration_dataset}: no "
                             "measured networks there")
        meter.join(record, FLAGS.calibration_dataset)  # the table in the dataset's units
    table = cell_table.profile(network, FLAGS.nodes, meter, FLAGS.out)
    if archs is None and FLAGS.calibration_archs:
        archs = measured.sample_unique(network, FLAGS.calibration_archs, FLAGS.seed,
                                       nodes=FLAGS.nodes, sampling=FLAGS.cell_sampling)
    if archs is not None and len(archs) >= 2:
        table = cell_table.calibrate(table, archs, ms, meter, FLAGS.out)
    fit = (f"; calibration on {len(table.calibration['measured_ms'])} networks: measured = "
           f"{table.calibration['scale']:.4f} x sum + {table.calibration['offset']:.4g} ms"
           if table.calibrated else "")
    print(f"{FLAGS.out}: {len(table.rows)} edge rows, placeholder network "
          f"{table.network_ms:.3f} ms "
          f"(device {table.device.get('device')}, {table.device.get('threads')} thread(s)){fit}")


if __name__ == "__main__":
    cli.run(main)
