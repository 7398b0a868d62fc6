"""Does the search find better networks? Searched vs random vs MobileNetV2-like on Fashion-MNIST,
at equal latency measured on this host.

    python bench/search_quality.py [--npz=../shared/data/fashion_mnist/fashion_mnist.npz] \
        [--target_fractions=0.3,0.7] [--methods=superkernel,proxyless] [--search_seeds=0,1] \
        [--train_examples=10000] [--search_epochs=5] [--train_epochs=5] \
        [--out=runs/search_quality]

Needs the Fashion-MNIST arrays (`x_train`, `y_train`, `x_test`, `y_test`); the default path is
the project's shared data folder, which users do not have: pass `--npz` (for example the
arrays saved from `tfds.load("fashion_mnist")`). On the `fashion` space (28x28x1) and a latency
table of this host (built into OUT/lut.json if absent):

1. the targets T are `--target_fractions` of the way across the space's latency range;
2. each method of `--methods` searches for T (`python -m tfnas.search --device=local`: the
   returned network is measured and matched to T); the first method once per seed of
   `--search_seeds` (how stable is the answer);
3. `--num_random` random networks of the space whose measured latency is within ±`--band` of T;
4. the MobileNetV2-like network (every layer MBConv3x3-e6) at the width multiplier measured
   within ±`--band` of T, else at the two widths measured nearest below and above T (channels
   round to multiples of 8, so widths are discrete), with its accuracy at T interpolated;
5. every network trained from scratch with one schedule (`tfnas.train.trainer`, the first
   `--train_examples` training images, seed 0) and evaluated once on the 10,000 test images;
   the first searched network also with seeds 1 and 2: the seed noise.

Prints per target the accuracy of each group (random: mean ± σ), the searched networks'
margins in units of the random σ, and writes OUT/results.json, OUT/results.csv and
OUT/pareto.png (accuracy against measured latency). Every search, measurement and training
run is kept in OUT: run the same command again to resume. Nothing is asserted: report what it
prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import flags

from tfnas import cli
from fashion import SHARED_NPZ, cached as _cached, dataset as fashion_dataset

ROOT = Path(__file__).resolve().parents[1]

FLAGS = flags.FLAGS
flags.DEFINE_string("npz", str(SHARED_NPZ), "Fashion-MNIST as an npz file.")
flags.DEFINE_string("space", "fashion", "Search space (28x28x1 input).")
flags.DEFINE_list("target_fractions", ["0.3", "0.7"], "Targets, as fractions of the space's "
                  "latency range on this host's table.")
flags.DEFINE_list("methods", ["superkernel", "proxyless"], "Search methods.")
flags.DEFINE_list("search_seeds", ["0", "1"], "Seeds of the first method's searches.")
flags.DEFINE_integer("train_examples", 10000, "Training images used (the first N).")
flags.DEFINE_integer("search_epochs", 5, "Epochs of each search.")
flags.DEFINE_integer("train_epochs", 5, "Epochs of every training run (one schedule).")
flags.DEFINE_integer("batch_size", 128, "Batch size of searches and training.")
flags.DEFINE_integer("num_random", 5, "Random networks per target.")
flags.DEFINE_float("band", 0.02, "Random and MobileNetV2-like networks: within this relative "
                   "measured latency of T.")
flags.DEFINE_list("noise_seeds", ["1", "2"], "More training seeds of the first searched "
                  "network (seed noise).")
flags.DEFINE_string("out", "runs/search_quality", "Output folder (resumable).")


def _search(out: Path, dataset: str, table: Path, target: float, method: str, seed: int
            ) -> dict:
    model_dir = out / f"search_{method}_seed{seed}"
    report = model_dir / "report.json"
    if report.exists() and "measured_ms" in json.loads(report.read_text()):
        return json.loads(report.read_text())
    command = [sys.executable, "-m", "tfnas.search", f"--space={FLAGS.space}",
               f"--dataset={dataset}", f"--latency_table={table}", "--device=local",
               f"--target_ms={target}", f"--method={method}", f"--epochs={FLAGS.search_epochs}",
               f"--batch_size={FLAGS.batch_size}", f"--seed={seed}", "--notrain_after_search",
               "--warmup_epochs=1", "--kernel_dropout=0", "--dropout_epochs=0",
               f"--model_dir={model_dir}"]
    print(f"searching: {method}, seed {seed}, T = {target:.4g} ms", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        from tfnas.errors import TfnasError

        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TfnasError(f"the {method} search failed: {last}")
    (model_dir / "search.log").write_text(done.stdout)
    return json.loads(report.read_text())


def _randoms(space, cost, meter, target: float, taken: set, seed: int) -> list[dict]:
    """`--num_random` networks measured within ±band of T (drawn from those predicted within
    ±band, measured eight at a time)."""
    from tfnas.latency.profiler import measure_many
    from tfnas.space import Architecture

    rng = np.random.default_rng(seed)
    near, tries = [], 0
    while len(near) < 2000 and tries < 400_000:  # random draws: the space may be large
        tries += 1
        arch = Architecture.sample(space, rng)
        if abs(cost.of(arch) / target - 1) <= FLAGS.band and arch.op_names not in taken:
            taken.add(arch.op_names)
            near.append(arch)
    kept: list[dict] = []
    for start in range(0, len(near), 8):
        chunk = near[start:start + 8]
        for arch, ms in zip(chunk, measure_many(chunk, meter, progress=False)):
            if abs(ms / target - 1) <= FLAGS.band and len(kept) < FLAGS.num_random:
                kept.append({"ops": list(arch.op_names), "measured_ms": ms,
                             "predicted_ms": cost.of(arch)})
        if len(kept) >= FLAGS.num_random:
            return kept
    raise SystemExit(f"only {len(kept)} random networks measured within ±{FLAGS.band:.0%} of "
                     f"{target:.4g} ms: widen --band")


def _mobilenet_widths(space, meter, out: Path) -> list[dict]:
    """Measured latency of the all-MBConv3x3-e6 network at each width multiplier that gives
    distinct channels (0.25 to 1.5)."""
    from tfnas.latency.profiler import measure_network
    from tfnas.space import Architecture, Op

    def measure() -> list[dict]:
        seen, rows = set(), []
        for width in np.round(np.arange(0.25, 1.501, 0.05), 2):
            wide = space.replace(width_multiplier=float(width))
            channels = tuple(wide.channels(s.filters) for s in wide.stages)
            if channels in seen:
                continue
            seen.add(channels)
            arch = Architecture.uniform(wide, Op(3, 6))
            rows.append({"width": float(width), "measured_ms": measure_network(arch, meter)})
        return rows

    return _cached(out / "mobilenet_widths.json", measure)


def _bracket(widths: list[dict], target: float) -> list[dict]:
    """The widths measured nearest T from below and from above (one if one is within the
    band): channels round to multiples of 8, so no width may land within ±band of T."""
    nearest = min(widths, key=lambda w: abs(w["measured_ms"] / target - 1))
    if abs(nearest["measured_ms"] / target - 1) <= FLAGS.band:
        return [nearest]
    below = [w for w in widths if w["measured_ms"] < target]
    above = [w for w in widths if w["measured_ms"] >= target]
    return ([max(below, key=lambda w: w["measured_ms"])] if below else []) + (
        [min(above, key=lambda w: w["measured_ms"])] if above else [])


def _train(arch, dataset: str, model_dir: Path, seed: int) -> float:
    from tfnas.train import trainer

    report = model_dir / "train_report.json"
    if not report.exists():
        import keras

        keras.backend.clear_session()
        trainer.train(trainer.TrainConfig(
            arch=arch, dataset=dataset, model_dir=str(model_dir), epochs=FLAGS.train_epochs,
            batch_size=FLAGS.batch_size, seed=seed, verbose=False))
    return json.loads(report.read_text())["top1"]


def main(argv: list[str]) -> None:
    import time

    from tfnas.search import budget, pareto
    from tfnas.costs import CostModel
    from tfnas.latency.devices import LocalDevice
    from tfnas.latency.meter import Meter, default_reference
    from tfnas.latency.profiler import calibrate, profile
    from tfnas.space import Architecture, Op, get_space, parse_ops

    began = time.time()
    out = Path(FLAGS.out)
    dataset = fashion_dataset(FLAGS.npz, out, FLAGS.train_examples)
    space = get_space(FLAGS.space)
    meter = Meter(LocalDevice(), reference=default_reference(space))
    table_path = out / "lut.json"
    table = calibrate(profile(space, meter, table_path), space, meter, table_path, num_archs=16)
    meter.anchor_to(table)
    cost = CostModel.from_table(space, table, f"latency table {table_path}")
    low, high = budget.cost_range(cost, space)
    widths = _mobilenet_widths(space, meter, out)
    results = []
    for fraction in [float(f) for f in FLAGS.target_fractions]:
        target = low + fraction * (high - low)
        folder = out / f"target_{fraction:g}"
        folder.mkdir(exist_ok=True)
        nets = []  # (group, name, arch, measured ms, seeds)
        for m, method in enumerate(FLAGS.methods):
            for seed in (FLAGS.search_seeds if m == 0 else FLAGS.search_seeds[:1]):
                report = _search(folder, dataset, table_path, target, method, int(seed))
                arch = Architecture.from_dict(report["arch"])
                noise = m == 0 and seed == FLAGS.search_seeds[0]
                nets.append((f"searched {method}", f"{method}_seed{seed}", arch,
                             report["measured_ms"],
                             [0] + ([int(s) for s in FLAGS.noise_seeds] if noise else [])))
        taken = {a.op_names for _, _, a, _, _ in nets}
        randoms = _cached(folder / "random.json",
                          lambda: _randoms(space, cost, meter, target, taken, int(1000 * fraction)))
        for i, r in enumerate(randoms):
            nets.append(("random", f"random_{i}", Architecture(space, tuple(parse_ops(r["ops"]))),
                         r["measured_ms"], [0]))
        for w in _bracket(widths, target):
            mbv2 = Architecture.uniform(space.replace(width_multiplier=w["width"]), Op(3, 6))
            nets.append(("mobilenetv2-like", f"mobilenetv2_w{w['width']:g}", mbv2,
                         w["measured_ms"], [0]))
        for group, name, arch, ms, seeds in nets:
            for seed in seeds:
                top1 = _train(arch, dataset, folder / "train" / f"{name}_seed{seed}", seed)
                results.append({"fraction": fraction, "target_ms": target, "group": group,
                                "name": name, "seed": seed, "ops": list(arch.op_names),
                                "width": arch.space.width_multiplier, "measured_ms": ms,
                                "latency_error": ms / target - 1, "params": arch.params(),
                                "mflops": arch.flops() / 1e6, "top1": top1})
                print(f"T={target:.4g} ms  {name:22s} seed {seed}: measured {ms:.4g} ms "
                      f"({(ms / target - 1) * 100:+.1f}%), top-1 {top1:.4f}", flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    main_runs = [r for r in results if r["seed"] == 0]
    pareto.write_table(results, out / "results")
    pareto.plot(main_runs, out / "pareto.png", group="group",
                targets=sorted({r["target_ms"] for r in results}),
                xlabel="latency measured on this host (ms)",
                ylabel="Fashion-MNIST test accuracy")
    _print_table(results)
    print(f"\n{FLAGS.space} space, {FLAGS.train_examples} training images, "
          f"{FLAGS.search_epochs} search / {FLAGS.train_epochs} training epochs, batch "
          f"{FLAGS.batch_size}; {time.time() - began:.0f} s; wrote {out}/results.json, "
          "results.csv and pareto.png")


def _print_table(results: list[dict]) -> None:
    for fraction in sorted({r["fraction"] for r in results}):
        rows = [r for r in results if r["fraction"] == fraction]
        target = rows[0]["target_ms"]
        print(f"\ntarget {fraction:g} of the range: T = {target:.4g} ms (test accuracy on 10,000 "
              "Fashion-MNIST test images)")
        main_seed = [r for r in rows if r["seed"] == 0]
        random = np.array([r["top1"] for r in main_seed if r["group"] == "random"])
        sigma = float(random.std(ddof=1)) if len(random) > 1 else float("nan")
        noise = [r["top1"] for r in rows if r["group"] != "random" and r["name"] == next(
            (x["name"] for x in rows if x["seed"] != 0), None)]
        for r in main_seed:
            margin = (r["top1"] - random.mean()) / sigma if sigma > 0 else float("nan")
            print(f"  {r['group']:26s} {r['name']:22s} {r['measured_ms']:.4g} ms "
                  f"({r['latency_error'] * 100:+.1f}%)  top-1 {r['top1']:.4f}"
                  + (f"  ({margin:+.2f} random σ)" if r["group"] != "random" else ""))
        print(f"  random: {random.mean():.4f} ± {sigma:.4f} (n={len(random)})")
        mbv2 = sorted((r for r in main_seed if r["group"] == "mobilenetv2-like"),
                      key=lambda r: r["measured_ms"])
        if len(mbv2) == 2:  # accuracy at T, linear in measured latency between the two
            (a, b), t = mbv2, target
            at_t = a["top1"] + (b["top1"] - a["top1"]) * (t - a["measured_ms"]) / (
                b["measured_ms"] - a["measured_ms"])
            print(f"  mobilenetv2-like at T (interpolated between widths {a['width']:g} and "
                  f"{b['width']:g}): {at_t:.4f}")
        if len(noise) > 1:
            print(f"  seed noise (one network, {len(noise)} seeds): {np.mean(noise):.4f} ± "
                  f"{np.std(noise, ddof=1):.4f}")


if __name__ == "__main__":
    cli.run(main)
