"""Latency budgets on DARTS cells (LA-DARTS): do searches land on their targets, measured?

    python bench/cell_latency_targets.py --lpm=lpm.json \
        [--npz=../shared/data/fashion_mnist/fashion_mnist.npz] [--fractions=0.1,0.3,0.5,0.7,0.9] \
        [--lams=0.1,1,10] [--noise=0.1] [--epochs=3] [--out=runs/cell_latency_targets]

`--lpm` is a latency predictor of the evaluation network (tools/train_predictor.py on
`--space=darts28 --cells=8 --init_channels=16`, with its latency dataset beside it, whose
units the measurements here join). On Fashion-MNIST (the first `--train_examples` training
and `--test_examples` test images; the default path is the project's shared data folder,
which users do not have: pass `--npz`), DARTS (first order) searches `darts28_search` cells
(`--search_cells`, `--search_channels`) for that evaluation network, and:

1. one search per target T at `--fractions` of the predictor's range (`--target_ms`, nothing
   else changed): the returned network's predicted and measured latency against T;
2. LA-DARTS' loss CE + λ·LAT (`--cost=linear --lam=λ`, LAT the mean prediction over 20
   networks sampled from α, its Eq. 2) for each λ of `--lams` (per ms): the derived network's
   predicted and measured latency should fall as λ rises;
3. the middle λ again with Gaussian noise of relative σ = `--noise` on the predicted latency
   at every step (`--latency_noise`, LA-DARTS' robustness test): how far the derived
   network's latency moves.

`--search_flags=--device=local` adds flags to every search: with a device, each search
measures its network there and solves again where it misses (`measured_networks` in its
report), and the network the predictor alone gave is measured here too. `--lams=` (empty)
leaves out parts 2 and 3.

Every search is kept in OUT (run again to resume); the returned networks are measured
together at the end (local device, 1 thread) in the predictor's dataset
units, and with `--latency_table` (a cell table calibrated on that dataset) anchored to its
calibration networks, timed again beside them; `--passes=N` times them N times (each pass
anchored again) and keeps each network's median. Prints one
table per part and writes OUT/results.json. Nothing is asserted: report what it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any
from pathlib import Path

import numpy as np
from absl import flags

from tfnas import cli
from fashion import SHARED_NPZ, cached as _cached, dataset as fashion_dataset

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("lpm", None, "Latency predictor of the evaluation network (JSON).")
flags.DEFINE_string("latency_table", None, "The network's cell latency table (optional): "
                    "its calibration networks are timed again beside the returned networks, "
                    "whose latencies are then in the units of the day it was measured.")
flags.DEFINE_string("npz", str(SHARED_NPZ), "Fashion-MNIST as an npz file.")
flags.DEFINE_list("fractions", ["0.1", "0.3", "0.5", "0.7", "0.9"], "Targets, as fractions "
                  "of the predictor's latency range.")
flags.DEFINE_list("targets_ms", [], "Targets in ms instead of --fractions (the range of "
                  "networks the predictor was trained on is where it is right).")
flags.DEFINE_list("lams", ["0.1", "1", "10"], "λ of the fixed-λ searches (per ms).")
flags.DEFINE_float("noise", 0.1, "Relative σ of the noise on the predicted latency.")
flags.DEFINE_integer("search_cells", 5, "Cells of the search network.")
flags.DEFINE_integer("search_channels", 8, "C of the search network.")
flags.DEFINE_integer("epochs", 3, "Epochs of each search.")
flags.DEFINE_integer("train_examples", 2000, "Training images (the first N).")
flags.DEFINE_integer("test_examples", 1000, "Validation images (the first N test images).")
flags.DEFINE_integer("batch_size", 64, "Batch size of the searches.")
flags.DEFINE_list("search_flags", [], "More flags for every search, e.g. --device=local "
                  "(each returned network measured on the device and solved again where it "
                  "misses the target).")
flags.DEFINE_string("out", "runs/cell_latency_targets", "Output folder (resumable).")
flags.DEFINE_integer("passes", 1, "Timing passes over the returned networks (each anchored "
                     "again): each network's latency is the median of its passes, and the "
                     "spread between passes is printed (this host's measurement floor).",
                     lower_bound=1)
flags.DEFINE_integer("repeats", 3, "Timings of each group of models per pass (the meter's "
                     "repeats; each model keeps its median).", lower_bound=1)
flags.mark_flag_as_required("lpm")


def _search(name: str, dataset: str, lpm: Path, network, nodes: int, *args: str) -> dict:
    model_dir = Path(FLAGS.out) / name
    report = model_dir / "report.json"
    if not report.exists():
        command = [sys.executable, "-m", "tfnas.search", "--space=darts28_search",
                   f"--cells={FLAGS.search_cells}", f"--init_channels={FLAGS.search_channels}",
                   f"--eval_cells={network.cells}",
                   f"--eval_init_channels={network.init_channels}", f"--nodes={nodes}",
                   "--method=darts",
                   f"--dataset={dataset}", f"--epochs={FLAGS.epochs}", "--warmup_epochs=1",
                   f"--batch_size={FLAGS.batch_size}", f"--latency_model=predictor:{lpm}",
                   f"--model_dir={model_dir}", *FLAGS.search_flags, *args]
        print("$", " ".join(command[1:]), flush=True)
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"search {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(report.read_text())


def main(argv: list[str]) -> None:
    from tfnas.latency import measured
    from tfnas.latency.devices import LocalDevice
    from tfnas.latency.meter import Meter, default_reference
    from tfnas.latency.predictor import LatencyPredictor
    from tfnas.latency.profiler import measure_networks
    from tfnas.search.budget import cost_range
    from tfnas.search.cell_budget import predictor_nodes
    from tfnas.space import load_architecture
    from tfnas.space.architecture import arch_of_record

    out = Path(FLAGS.out)
    dataset = fashion_dataset(FLAGS.npz, out, FLAGS.train_examples, FLAGS.test_examples)
    lpm_path = Path(FLAGS.lpm).resolve()
    lpm = LatencyPredictor.load(lpm_path)
    network = lpm.space
    meter = Meter(LocalDevice(threads=1), reference=default_reference(network),
                  repeats=FLAGS.repeats)
    units = lpm.metrics.get("dataset")
    if units and Path(units).exists():
        _, _, record = measured.load(units, network)
        meter.join(record, units)
    low, high = cost_range(lpm, network)
    nodes = predictor_nodes(lpm)
    print(f"{network.name}: {network.cells} cells, C={network.init_channels}; the predictor "
          f"spans {low:.4f} to {high:.4f} ms")

    if FLAGS.latency_table:
        from tfnas.latency.cell_table import CellLatencyTable

        meter.anchor_to(CellLatencyTable.load(FLAGS.latency_table))
    reports: dict[str, dict] = {}
    targets = ([float(t) for t in FLAGS.targets_ms] or
               [round(low + float(f) * (high - low), 4) for f in FLAGS.fractions])
    for target in targets:
        reports[f"target_{target:g}"] = _search(f"target_{target:g}", dataset, lpm_path,
                                                network, nodes, f"--target_ms={target}")
    for lam in FLAGS.lams:
        reports[f"lam_{lam}"] = _search(f"lam_{lam}", dataset, lpm_path, network, nodes,
                                        "--cost=linear", f"--lam={lam}")
    middle = FLAGS.lams[len(FLAGS.lams) // 2] if FLAGS.lams else None
    noisy_name = f"lam_{middle}_noise_{FLAGS.noise:g}"
    if middle is not None:
        reports[noisy_name] = _search(noisy_name, dataset, lpm_path, network, nodes,
                                      "--cost=linear", f"--lam={middle}",
                                      f"--latency_noise={FLAGS.noise}")

    def first_of(name: str) -> Any:
        """With --device: the network the predictor alone gave, before the search measured
        it and solved again (None when it was kept)."""
        tried = reports[name].get("measured_networks") or []
        return arch_of_record(network, tried[0]["genotype"]) if len(tried) > 1 else None

    def measure_all() -> dict:  # one call a pass: the anchors are timed with them
        names = list(reports)
        archs = [load_architecture(out / name / "arch.json") for name in names]
        firsts = [(f"{n}/first", first_of(n)) for n in names if first_of(n) is not None]
        passes = [measure_networks(meter, archs + [a for _, a in firsts],
                                   what=f"measuring the returned networks, pass {k + 1} of "
                                   f"{FLAGS.passes}") for k in range(FLAGS.passes)]
        return dict(zip(names + [n for n, _ in firsts], map(list, zip(*passes))))

    # each network's passes (an older file holds one value each), and their median
    timings = {name: v if isinstance(v, list) else [v] for name, v in
               _cached(out / f"measured_{FLAGS.passes}x{FLAGS.repeats}.json"
                       if (FLAGS.passes, FLAGS.repeats) != (1, 3) else out / "measured.json",
                       measure_all).items()}
    measured_ms = {name: float(np.median(v)) for name, v in timings.items()}
    spread = [max(v) / min(v) - 1 for v in timings.values()]

    def outcome(name: str) -> dict:
        report = reports[name]
        return {"name": name, "predicted_ms": report["predicted_ms"],
                "measured_ms": measured_ms[name], "arch": report["arch"]}

    results: dict = {"range_ms": [low, high], "targets": [], "lams": [], "noise": None,
                     "anchor_scales": meter.anchor_scales, "passes": timings}
    for target in targets:
        row = outcome(f"target_{target:g}")
        row.update(target_ms=target, predicted_error=row["predicted_ms"] / target - 1,
                   measured_error=row["measured_ms"] / target - 1)
        tried = reports[row["name"]].get("measured_networks")
        if tried:  # --device: what the search measured, and the predictor's own network
            row["searched_on_device"] = tried
            if f"{row['name']}/first" in measured_ms:
                first = measured_ms[f"{row['name']}/first"]
                row["first"] = {"predicted_ms": tried[0]["predicted"], "measured_ms": first,
                                "measured_error": first / target - 1}
        results["targets"].append(row)
    for lam in FLAGS.lams:
        results["lams"].append({**outcome(f"lam_{lam}"), "lam": float(lam)})
    if middle is not None:
        noisy = outcome(noisy_name)
        clean = next(r for r in results["lams"] if r["name"] == f"lam_{middle}")
        results["noise"] = {
            "sigma": FLAGS.noise, "lam": float(middle), "clean": clean, "noisy": noisy,
            "predicted_change": noisy["predicted_ms"] / clean["predicted_ms"] - 1,
            "measured_change": noisy["measured_ms"] / clean["measured_ms"] - 1}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    print("\n1. one search per --target_ms (DARTS, LPM, nothing else changed)")
    print(f"{'target ms':>10} {'predicted':>10} {'error':>7} {'measured':>10} {'error':>7}")
    for r in results["targets"]:
        print(f"{r['target_ms']:>10.4f} {r['predicted_ms']:>10.4f} "
              f"{r['predicted_error'] * 100:>6.2f}% {r['measured_ms']:>10.4f} "
              f"{r['measured_error'] * 100:>6.2f}%")
    errors = [abs(r["measured_error"]) for r in results["targets"]]
    print(f"measured error: median {np.median(errors) * 100:.2f}%, max {max(errors) * 100:.2f}%")
    if FLAGS.passes > 1 or len(next(iter(timings.values()))) > 1:
        print(f"(median of {len(next(iter(timings.values())))} passes a network; max/min of "
              f"one network's passes: median {np.median(spread) * 100:.1f}%, max "
              f"{max(spread) * 100:.1f}%)")
    for r in results["targets"]:
        if "first" in r:
            tried, first = r["searched_on_device"], r["first"]
            print(f"{r['target_ms']:g} ms: the predictor's network {first['predicted_ms']:.4f} "
                  f"ms predicted, {first['measured_ms']:.4f} measured here "
                  f"({first['measured_error'] * 100:+.2f}%); the search measured {len(tried)} "
                  "networks on its device ("
                  + ", ".join(f"{t['predicted']:.4f}→{t['measured']:.4f}" for t in tried)
                  + " ms) and kept the one above")
    if middle is None:
        return
    print("\n2. LA-DARTS' loss CE + λ·LAT (fixed λ, no solver)")
    print(f"{'λ per ms':>10} {'predicted':>10} {'measured':>10}")
    for r in results["lams"]:
        print(f"{r['lam']:>10g} {r['predicted_ms']:>10.4f} {r['measured_ms']:>10.4f}")
    n = results["noise"]
    print(f"\n3. noise σ = {n['sigma']:g} on the predicted latency (λ = {n['lam']:g}): derived "
          f"network {n['noisy']['predicted_ms']:.4f} ms predicted "
          f"({n['predicted_change'] * 100:+.2f}% vs without), {n['noisy']['measured_ms']:.4f} ms "
          f"measured ({n['measured_change'] * 100:+.2f}%)")


if __name__ == "__main__":
    cli.run(main)
