"""How good is a latency table? Measure unseen networks and compare.

    python tools/validate_latency.py --space=tiny --latency_table=lut.json --device=local \
        --num_archs=30 --out=runs/validation

Samples `--num_archs` random architectures (seeded apart from the calibration networks),
measures each whole network on the device, and compares with the raw table (sum of rows) and
the calibrated table. Writes DIR/validation.json (raw_mape, calibrated_mape, predictor_mape in
percent, rmse_ms and max_error_ms of the calibrated table, one row per architecture) and
DIR/validation.png (predicted vs measured).
"""

from __future__ import annotations

import json
from pathlib import Path

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "tiny", "Search space preset.")
flags.DEFINE_integer("input_size", None, "Override the space's input size.")
flags.DEFINE_string("latency_table", None, "The table to validate.")
flags.DEFINE_string("device", "local", "Where to measure: local, adb:SERIAL or cmd:TEMPLATE.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
flags.DEFINE_integer("num_archs", 30, "Unseen architectures to measure.", lower_bound=1)
flags.DEFINE_integer("seed", 1000, "Seed of the sampled architectures.")
flags.DEFINE_integer("runs", 50, "Timed runs per network.", lower_bound=1)
flags.DEFINE_string("out", None, "Output folder.")
flags.mark_flags_as_required(["latency_table", "out"])


def _errors(predicted: list[float], measured: list[float]) -> dict[str, float]:
    import numpy as np

    p, m = np.asarray(predicted), np.asarray(measured)
    return {"mape": float(np.mean(np.abs(p - m) / m) * 100),
            "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
            "max_error_ms": float(np.max(np.abs(p - m)))}


def main(argv: list[str]) -> None:
    import numpy as np
    from tqdm import tqdm

    from tfnas.latency.devices import parse_device
    from tfnas.latency.profiler import measure_network
    from tfnas.latency.table import LatencyTable
    from tfnas.space import Architecture, get_space

    space = get_space(FLAGS.space, input_size=FLAGS.input_size)
    table = LatencyTable.load(FLAGS.latency_table)
    table.check_covers(space, f"latency table {FLAGS.latency_table!r}")
    device = parse_device(FLAGS.device, threads=FLAGS.threads)
    device.check()
    rng = np.random.default_rng(FLAGS.seed)
    seen = {tuple(ops) for ops in table.calibration.get("archs", [])}
    archs = []
    while len(archs) < FLAGS.num_archs:
        arch = Architecture.sample(space, rng)
        if tuple(op.name for op in arch.ops) not in seen:
            archs.append(arch)
            seen.add(tuple(op.name for op in arch.ops))
    rows = []
    for arch in tqdm(archs, desc="measuring", unit="net"):
        stats = measure_network(arch, device, runs=FLAGS.runs)
        rows.append({"ops": [op.name for op in arch.ops], "measured_ms": stats["median_ms"],
                     "raw_ms": table.cost(arch), "calibrated_ms": table.calibrated_cost(arch)})
    measured = [r["measured_ms"] for r in rows]
    raw = _errors([r["raw_ms"] for r in rows], measured)
    cal = _errors([r["calibrated_ms"] for r in rows], measured)
    report = {"space": space.name, "device": device.describe(), "table": FLAGS.latency_table,
              "calibrated": table.calibrated, "num_archs": len(rows),
              "raw_mape": raw["mape"], "calibrated_mape": cal["mape"], "predictor_mape": None,
              "rmse_ms": cal["rmse_ms"], "max_error_ms": cal["max_error_ms"],
              "raw_rmse_ms": raw["rmse_ms"], "architectures": rows}
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(report, indent=1) + "\n")
    _plot(rows, out / "validation.png", space.name, device.name, raw["mape"], cal["mape"])
    print(f"{len(rows)} unseen {space.name} networks on {device.name}: raw table MAPE "
          f"{raw['mape']:.2f}%, calibrated MAPE {cal['mape']:.2f}% (RMSE {cal['rmse_ms']:.3f} ms"
          f", max error {cal['max_error_ms']:.3f} ms); wrote {out}/validation.json and .png")


def _plot(rows: list[dict], path: Path, space: str, device: str, raw: float, cal: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r["measured_ms"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(measured, [r["raw_ms"] for r in rows], s=14, label=f"raw table ({raw:.2f}%)")
    ax.scatter(measured, [r["calibrated_ms"] for r in rows], s=14,
               label=f"calibrated ({cal:.2f}%)")
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
