"""How good is a latency model? Measure unseen networks and compare.

    python tools/validate_latency.py --space=tiny --latency_table=lut.json --device=local \
        --num_archs=30 --predictor=predictor.json --out=runs/validation

Samples `--num_archs` random architectures (seeded apart from the calibration networks and
the predictor's training set), measures each whole network on the device in the table's
units (its statistic and reference network, see tfnas/latency/meter.py), and compares them
with the raw table (sum of rows), the calibrated table and, with `--predictor`, the MLP
predictor. Writes DIR/validation.json (raw_mape, calibrated_mape, predictor_mape in percent,
rmse_ms and max_error_ms of the calibrated table, the same for the predictor, one row per
architecture) and DIR/validation.png (predicted vs measured).

On a network of DARTS cells (`--space=darts28`, `--cells`, `--init_channels`, `--nodes`) the
table is a per-edge table (tools/build_lut.py on that network) and the networks random
derived cells; `--predictor` takes several predictors (LA-DARTS' LPM and tfnas' own), each
reported by its file name:

    python tools/validate_latency.py --space=darts28 --cells=8 --init_channels=16 \
        --latency_table=cell_lut.json --predictor=lpm.json,tfnas.json --device=local \
        --out=runs/cell_validation
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
cli.define_space_flags()
flags.DEFINE_string("latency_table", None, "The table to validate.")
flags.DEFINE_list("predictor", [], "Latency predictors to validate too (optional).")
cli.define_cell_flags()
cli.define_measurement_flags()
cli.define_cell_sampling_flags()
flags.DEFINE_integer("num_archs", 30, "Unseen architectures to measure.", lower_bound=1)
flags.DEFINE_integer("seed", 1000, "Seed of the sampled architectures.")
flags.DEFINE_bool("anchor", True, "Time the table's calibration networks again alongside and "
                  "report in the table's units (see tfnas/latency/meter.py); the report also "
                  "gives the MAPEs without it.")
flags.DEFINE_string("out", None, "Output folder.")
flags.mark_flags_as_required(["latency_table", "out"])


def main(argv: list[str]) -> None:
    import numpy as np

    from tfnas.latency import measured, predictor
    from tfnas.latency.profiler import measure_many
    from tfnas.run.rundir import check_output
    from tfnas.space.cells import is_cell_network

    check_output(FLAGS.out, "--out", kind="dir")
    space = cli.search_space_from_flags(FLAGS)
    cells = is_cell_network(space)
    table, seen, raw_of, calibrated_of = _cell_table(space) if cells else _layer_table(space)
    models = {Path(path).name: predictor.LatencyPredictor.load(path) for path in FLAGS.predictor}
    for model in models.values():
        if model.space != space:
            from tfnas.errors import TfnasError

            raise TfnasError(f"the predictor is for {model.space.name!r} networks, not this "
                             f"{space.name!r}")
        if model.metrics.get("dataset"):
            trained, _, _ = measured.load(model.metrics["dataset"], space)
            seen |= {measured.key(a) for a in trained}
    meter = cli.meter_from_flags(FLAGS, space)
    meter.adopt(table.device)
    if FLAGS.anchor:
        meter.anchor_to(table)
    archs = measured.sample_unique(space, FLAGS.num_archs, FLAGS.seed, exclude=seen,
                                   nodes=FLAGS.nodes, sampling=FLAGS.cell_sampling)
    ms = measure_many(archs, meter)
    rows = [{**({"genotype": arch.genotype.to_dict()} if cells else
                {"ops": list(arch.op_names)}), "measured_ms": m, "raw_ms": raw_of(arch),
             "calibrated_ms": calibrated_of(arch)} for arch, m in zip(archs, ms)]
    for name, model in models.items():
        for row, value in zip(rows, model.predict(archs)):
            row[f"{name}_ms"] = float(value)
            row.setdefault("predictor_ms", float(value))  # the first predictor's, as before
    raw = predictor.errors([r["raw_ms"] for r in rows], ms)
    cal = predictor.errors([r["calibrated_ms"] for r in rows], ms)
    mlps = {name: predictor.errors([r[f"{name}_ms"] for r in rows], ms) for name in models}
    mlp = next(iter(mlps.values()), None)
    # the same measurements without the anchors' rescaling (the host's speed of today)
    scales = meter.anchor_scales or [1.0]
    plain = [m / scales[i // meter.anchor_every] for i, m in enumerate(ms)]
    anchor_scale = float(np.median(scales))
    report = {"space": space.name, "device": table.device, "table": FLAGS.latency_table,
              "predictor": FLAGS.predictor, "calibrated": table.calibrated,
              "num_archs": len(rows), "raw_mape": raw["mape"], "calibrated_mape": cal["mape"],
              "predictor_mape": mlp["mape"] if mlp else None,
              "rmse_ms": cal["rmse_ms"], "max_error_ms": cal["max_error_ms"],
              "raw_rmse_ms": raw["rmse_ms"], "raw_max_error_ms": raw["max_error_ms"],
              "predictor_rmse_ms": mlp["rmse_ms"] if mlp else None,
              "predictor_max_error_ms": mlp["max_error_ms"] if mlp else None,
              "predictors": mlps,
              "anchor_scale": anchor_scale,
              "unanchored_calibrated_mape": predictor.errors(
                  [r["calibrated_ms"] for r in rows], plain)["mape"],
              "unanchored_predictor_mape": predictor.errors(
                  [r["predictor_ms"] for r in rows], plain)["mape"] if mlp else None,
              "architectures": rows}
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(report, indent=1) + "\n")
    _plot(rows, out / "validation.png", space.name, meter.device.name,
          {"raw table": ("raw_ms", raw["mape"]), "calibrated table": ("calibrated_ms", cal["mape"]),
           **{name: (f"{name}_ms", e["mape"]) for name, e in mlps.items()}})
    extra = "".join(f"; {name} MAPE {e['mape']:.2f}% (RMSE {e['rmse_ms']:.4g} ms, max error "
                    f"{e['max_error_ms']:.4g} ms)" for name, e in mlps.items())
    print(f"{len(rows)} unseen {space.name} networks on {meter.device.name}: raw table MAPE "
          f"{raw['mape']:.2f}%, calibrated MAPE {cal['mape']:.2f}% (RMSE {cal['rmse_ms']:.4g} "
          f"ms, max error {cal['max_error_ms']:.4g} ms){extra}; wrote {out}/validation.json "
          "and .png")
    if meter.anchor_scales:
        print(f"anchored to the table's calibration networks: the host measured them "
              f"{abs(1 / anchor_scale - 1) * 100:.1f}% {'slower' if anchor_scale < 1 else 'faster'}"
              f" than when the table was built; without that correction: calibrated MAPE "
              f"{report['unanchored_calibrated_mape']:.2f}%"
              + (f", predictor MAPE {report['unanchored_predictor_mape']:.2f}%" if mlp else ""))


def _layer_table(space: Any) -> tuple[Any, set[str], Any, Any]:
    """A layer space's table, the keys of its calibration networks, its raw and calibrated
    costs."""
    from tfnas.latency import measured
    from tfnas.latency.table import LatencyTable
    from tfnas.space.architecture import arch_of_record

    table = LatencyTable.load(FLAGS.latency_table)
    table.check_covers(space, f"latency table {FLAGS.latency_table!r}")
    seen = {measured.key(arch_of_record(space, item))
            for item in table.calibration.get("archs", [])}
    return table, seen, table.cost, table.calibrated_cost


def _cell_table(network: Any) -> tuple[Any, set[str], Any, Any]:
    """The same of a network of cells: its per-edge table."""
    from tfnas.costs import CellCost
    from tfnas.latency import measured
    from tfnas.latency.cell_table import CellLatencyTable
    from tfnas.space.architecture import arch_of_record

    table = CellLatencyTable.load(FLAGS.latency_table)
    table.check_for(network, FLAGS.nodes, f"--latency_table={FLAGS.latency_table}")
    seen = {measured.key(arch_of_record(network, item))
            for item in table.calibration.get("archs", [])}
    return table, seen, table.raw_ms, CellCost.from_table(table).of


def _plot(rows: list[dict], path: Path, space: str, device: str,
          series: dict[str, tuple[str, float]]) -> None:
    """Predicted vs measured, one series per model: label → (row key, MAPE)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r["measured_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, (key, mape) in series.items():
        ax.scatter(measured, [r[key] for r in rows], s=14, label=f"{label} ({mape:.2f}%)")
    low, high = min(measured) * 0.95, max(measured) * 1.05
    ax.plot([low, high], [low, high], "k--", lw=1, label="predicted = measured")
    ax.set(xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
           title=f"{space} on {device}: MAPE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    cli.run(main)
