"""Is the searched network worth the search? It against hand-made and random ones, same latency.

    python bench/searched_vs_baselines.py --latency_table=runs/quickstart/lut.json \
        [--dataset=digits] [--search_epochs=8] [--train_epochs=15] [--num_random=5] \
        [--out=runs/baselines]

On the `tiny` space and one latency table of this host (build one with the quickstart or
`tools/build_lut.py --space=tiny --device=local`):

1. the MobileNetV2-like network of the space (every layer MBConv3x3-e6) sets the latency T
   (predicted by the table);
2. one superkernel search with `--target_ms=T` (learned λ, then the exact solver) finds a network at T;
3. `--num_random` random networks whose predicted latency is within ±2% of T are drawn;
4. all are measured side by side on this host (pairs against the table's reference network,
   in the table's units) and trained from scratch with one schedule (`tfnas.trainer`, same
   seed and epochs), and a table prints predicted and measured latency and top-1.

No figure is asserted: report what it prints, whatever it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import flags

from tfnas import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("latency_table", None, "Latency table of the tiny space on this host.")
flags.DEFINE_string("dataset", "digits", "Dataset to search and train on.")
flags.DEFINE_integer("search_epochs", 8, "Epochs of the search.")
flags.DEFINE_integer("train_epochs", 15, "Epochs of every training run (one schedule).")
flags.DEFINE_integer("num_random", 5, "Random networks at the same latency.")
flags.DEFINE_float("band", 0.02, "Random networks are within this relative latency of T.")
flags.DEFINE_integer("seed", 0, "Seed of the random draw, the search and the training.")
flags.DEFINE_string("out", "runs/baselines", "Output folder.")
flags.mark_flag_as_required("latency_table")


def main(argv: list[str]) -> None:
    import itertools

    from tfnas import trainer
    from tfnas.costs import CostModel
    from tfnas.errors import TfnasError
    from tfnas.latency.devices import LocalDevice
    from tfnas.latency.meter import Meter
    from tfnas.latency.profiler import measure_many
    from tfnas.latency.table import LatencyTable
    from tfnas.space import Architecture, Op, get_space

    space = get_space("tiny")
    table = LatencyTable.load(FLAGS.latency_table)
    cost = CostModel.latency(space, table, f"latency table {FLAGS.latency_table!r}")
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    mbv2 = Architecture.uniform(space, Op(3, 6))
    target = cost.of(mbv2)
    print(f"T = {target:.5g} ms: the MobileNetV2-like network's predicted latency", flush=True)

    search_dir = out / "search"
    command = [sys.executable, "-m", "tfnas.search", "--space=tiny", "--batch_size=64",
               "--kernel_dropout=0", "--dropout_epochs=0",
               f"--dataset={FLAGS.dataset}", f"--latency_table={FLAGS.latency_table}",
               f"--target_ms={target}", f"--epochs={FLAGS.search_epochs}",
               "--warmup_epochs=1", f"--seed={FLAGS.seed}", f"--model_dir={search_dir}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise TfnasError(f"the search failed: {last}")
    searched = Architecture.load(search_dir / "arch.json")

    taken = {mbv2.op_names, searched.op_names}
    near = [a for a in (Architecture(space, ops) for ops in itertools.product(
                *(space.candidates(i) for i in range(space.num_layers))))
            if abs(cost.of(a) / target - 1) <= FLAGS.band and a.op_names not in taken]
    if len(near) < FLAGS.num_random:
        raise TfnasError(f"only {len(near)} networks of the space lie within ±{FLAGS.band:.0%} "
                         f"of {target:.4g} ms: widen --band")
    rng = np.random.default_rng(FLAGS.seed)
    randoms = [near[i] for i in rng.choice(len(near), FLAGS.num_random, replace=False)]

    nets = [("searched", searched), ("mobilenetv2-like", mbv2)] + [
        (f"random {i}", a) for i, a in enumerate(randoms)]
    meter = Meter(LocalDevice())
    meter.join(table.device, f"latency table {FLAGS.latency_table!r}")  # this host's units
    meter.anchor_to(table)
    measured = measure_many([a for _, a in nets], meter)
    rows = []
    for (name, arch), ms in zip(nets, measured):
        config = trainer.TrainConfig(arch=arch, dataset=FLAGS.dataset,
                                     model_dir=str(out / name.replace(" ", "_")),
                                     epochs=FLAGS.train_epochs, seed=FLAGS.seed, verbose=False)
        report = trainer.train(config)
        rows.append({"name": name, "ops": list(arch.op_names), "predicted_ms": cost.of(arch),
                     "measured_ms": ms, "top1": report["top1"], "params": arch.params()})
        print(f"trained {name}: top-1 {report['top1']:.4f}", flush=True)
    (out / "comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{'network':18s} {'predicted ms':>12s} {'measured ms':>11s} {'x T':>6s} "
          f"{'top-1':>7s} {'params':>7s}  ops")
    for r in rows:
        print(f"{r['name']:18s} {r['predicted_ms']:12.5g} {r['measured_ms']:11.5g} "
              f"{r['measured_ms'] / target:6.3f} {r['top1']:7.4f} {r['params']:7,d}  "
              f"{','.join(r['ops'])}")
    mean_random = float(np.mean([r["top1"] for r in rows[2:]]))
    print(f"searched {rows[0]['top1']:.4f}, MobileNetV2-like {rows[1]['top1']:.4f}, mean of "
          f"{len(randoms)} random {mean_random:.4f} (top-1, {FLAGS.train_epochs} epochs each)")


if __name__ == "__main__":
    cli.run(main)
