"""Train the MLP latency predictor of a space on networks measured on a device.

    python tools/train_predictor.py --space=tiny --device=local --num_archs=200 \
        --latency_table=lut.json --out=predictor.json
    python tools/train_predictor.py --space=darts28 --device=local --num_archs=200 \
        --hidden=112,256,64 --activation=sigmoid --out=lpm.json      # LA-DARTS' LPM

On a network of DARTS cells (`--space=darts28`, `darts_cifar`, ...; `--cells`,
`--init_channels`) the networks are random derived cells (`--nodes` per cell, their ops drawn
as `--cell_sampling` says), encoded as LA-DARTS does (the normal cell's 14 edges x 8
ops; `--reduce_cell`: the reduction cell too); their `--latency_table` is a per-edge table
(tools/build_lut.py on the same network), the prior of tfnas' own predictor for cells.

Samples `--num_archs` random architectures (seeded), measures each whole network on the
device into `--dataset` (default: OUT with .dataset.json; resumable: a second run measures
only the missing networks), trains the predictor on a random 80% and reports RMSE and MAPE on
the held-out 20%, then refits on all of them and writes `--out`. With `--latency_table`, the
networks are measured in that table's units (its statistic and reference network), so the
table and the predictor can be compared and swapped, and the predictor starts from the
calibrated table and learns what it misses (`--notable_prior`: from scratch), pulled back to
it by a `--prior_decay` chosen by 5-fold cross-validation on the training part.
"""

from __future__ import annotations

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
cli.define_space_flags()
cli.define_cell_flags()
cli.define_measurement_flags()
cli.define_cell_sampling_flags()
flags.DEFINE_bool("reduce_cell", False, "Cell networks: encode the reduction cell too (LA-DARTS "
                  "encodes the normal cell alone).")
flags.DEFINE_integer("num_archs", 300, "Networks to measure.", lower_bound=5)
flags.DEFINE_integer("seed", 0, "Seed of the sampled networks, the split and the MLP.")
flags.DEFINE_string("latency_table", None, "Measure in this table's units (optional).")
flags.DEFINE_string("dataset", None, "The measured networks (JSON, resumable); default "
                    "OUT.dataset.json.")
flags.DEFINE_list("hidden", ["64", "64"], "Widths of the hidden layers (LightNAS: 128,64; "
                  "LA-DARTS: 112,256,64 with --activation=sigmoid).")
flags.DEFINE_enum("activation", "relu", ["relu", "sigmoid", "tanh"], "Activation of the "
                  "hidden layers.")
flags.DEFINE_integer("steps", 2000, "Adam steps (full batch).", lower_bound=1)
flags.DEFINE_bool("table_prior", True, "With --latency_table: start from the calibrated table "
                  "and learn what it misses (see tfnas/latency/predictor.py).")
flags.DEFINE_float("prior_decay", None, "With the table prior: how strongly the linear part is "
                   "pulled back to the table; default: chosen by 5-fold cross-validation "
                   "among 0.01, 0.1, 1 and 10.", lower_bound=0.0)
flags.DEFINE_string("out", None, "The predictor (JSON).")
flags.mark_flag_as_required("out")


def main(argv: list[str]) -> None:
    import numpy as np

    from tfnas.costs import CellCost, CostModel
    from tfnas.latency import measured, predictor
    from tfnas.latency.table import LatencyTable

    from tfnas.errors import TfnasError

    try:  # a bad shape stops before any measuring
        hidden = tuple(int(w) for w in FLAGS.hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError
    except ValueError:
        raise TfnasError(f"--hidden: expected positive comma-separated widths such as 64,64, "
                         f"got {','.join(FLAGS.hidden)!r}") from None
    from tfnas.run.rundir import check_output

    from tfnas.space.cells import is_cell_network

    space = cli.search_space_from_flags(FLAGS)
    cells = is_cell_network(space)
    if not cells and (FLAGS.reduce_cell or FLAGS.nodes != 4
                      or FLAGS.cell_sampling != "uniform"):
        raise TfnasError(f"--reduce_cell, --nodes and --cell_sampling are for networks of "
                         f"DARTS cells, not the {space.name} layer space")
    dataset = FLAGS.dataset or f"{FLAGS.out.removesuffix('.json')}.dataset.json"
    check_output(FLAGS.out, "--out")
    check_output(dataset, "--dataset")
    table = None
    if FLAGS.latency_table and cells:
        from tfnas.latency.cell_table import CellLatencyTable

        table = CellLatencyTable.load(FLAGS.latency_table)
        table.check_for(space, FLAGS.nodes, f"--latency_table={FLAGS.latency_table}")
    elif FLAGS.latency_table:
        table = LatencyTable.load(FLAGS.latency_table)
        table.check_covers(space, f"latency table {FLAGS.latency_table!r}")
    meter = cli.meter_from_flags(FLAGS, space)
    if table is not None:
        meter.adopt(table.device)
        meter.anchor_to(table)  # the dataset in the table's units, even if the host moved
    archs, ms = measured.collect(dataset, space, meter, FLAGS.num_archs, seed=FLAGS.seed,
                                 nodes=FLAGS.nodes, sampling=FLAGS.cell_sampling)
    order = np.random.default_rng(FLAGS.seed).permutation(len(archs))
    n_test = max(1, len(archs) // 5)
    test, train = order[:n_test], order[n_test:]
    shape = dict(hidden=hidden, activation=FLAGS.activation, steps=FLAGS.steps,
                 seed=FLAGS.seed, **({"reduce_cell": FLAGS.reduce_cell} if cells else {}))
    prior = None
    if table is not None:
        prior = CellCost.from_table(table) if cells else CostModel.from_table(space, table)
    options = dict(shape, table=prior if FLAGS.table_prior else None)
    if options["table"] is not None:
        decay = FLAGS.prior_decay
        if decay is None:
            decay = predictor.choose_prior_decay(
                space, [archs[i] for i in train], [ms[i] for i in train], table=prior,
                **shape,
                on_result=lambda d, mape: print(f"prior_decay {d:g}: 5-fold MAPE {mape:.2f}%",
                                                flush=True))
            print(f"prior_decay {decay:g} (lowest cross-validated MAPE)")
        options["prior_decay"] = decay
    held_out = predictor.fit(space, [archs[i] for i in train], [ms[i] for i in train],
                             **options)
    metrics = predictor.errors(held_out.predict([archs[i] for i in test]),
                               [ms[i] for i in test])
    final = predictor.fit(space, archs, ms, **options)
    final.measurement = {**meter.device.describe(), **meter.describe()}
    final.metrics = {**metrics, "num_train": len(train), "num_test": len(test),
                     "dataset": dataset, "prior_decay": options.get("prior_decay")}
    final.save(FLAGS.out)
    print(f"{FLAGS.out}: trained on {len(archs)} {space.name} networks from {meter.device.name}; "
          f"held-out {len(test)}: MAPE {metrics['mape']:.2f}%, RMSE {metrics['rmse_ms']:.4f} ms, "
          f"max error {metrics['max_error_ms']:.4f} ms")


if __name__ == "__main__":
    cli.run(main)
