"""A sweep spread over worker processes: wall time of one worker against several.

    python bench/sweep_workers.py [--workers=2] [--targets=0.3,0.5,0.7] [--out=runs/sweep_workers]

Runs the same `python -m tfnas.sweep` (the `tiny` space on digits, a FLOPs-priced latency
table, `--target_fractions`, searches only) once with one process and once with `--workers`
processes started on the same MODEL_DIR, as hosts sharing a folder would run it; prints both
wall times, their ratio, which worker ran which target, and the targets' results (the same
flags give the same networks, whoever runs them). The workers share this host's cores (2
here): on separate hosts each would have its own. Nothing is asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from tfnas import cli

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_integer("workers", 2, "Sweep processes of the parallel run.", lower_bound=1)
flags.DEFINE_list("targets", ["0.3", "0.5", "0.7"], "Target fractions.")
flags.DEFINE_integer("epochs", 3, "Epochs of each search.")
flags.DEFINE_string("out", "runs/sweep_workers", "Output folder (emptied first).")


def sweep(model_dir: Path, table: Path, workers: int) -> tuple[float, list[str]]:
    command = [sys.executable, "-m", "tfnas.sweep", "--space=tiny", "--dataset=digits",
               "--batch_size=128", "--warmup_epochs=0", "--kernel_dropout=0",
               "--dropout_epochs=0", f"--epochs={FLAGS.epochs}", f"--latency_table={table}",
               "--notrain_after_search", f"--target_fractions={','.join(FLAGS.targets)}",
               f"--model_dir={model_dir}"]
    began = time.perf_counter()
    procs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(workers)]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - began
    for p, out in zip(procs, outs):
        if p.returncode != 0:
            raise SystemExit(f"a sweep worker failed:\n{out[-3000:]}")
    return seconds, outs


def main(argv: list[str]) -> None:
    from tfnas.latency.table import LatencyTable
    from tfnas.space import get_space

    out = Path(FLAGS.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    table = out / "lut.json"
    LatencyTable.from_flops(get_space("tiny"), ms_per_mflop=1.0).save(table)
    one, _ = sweep(out / "one", table, 1)
    many, outs = sweep(out / "many", table, FLAGS.workers)
    print(f"{len(FLAGS.targets)} targets: one worker {one:.1f} s, {FLAGS.workers} workers "
          f"{many:.1f} s (ratio {many / one:.2f})")
    for i, text in enumerate(outs):
        ran = [line.split(":")[0] for line in text.splitlines() if ": searching (" in line]
        print(f"  worker {i + 1} searched {', '.join(ran) or 'nothing'}")
    for fraction in FLAGS.targets:
        name = f"fraction_{float(fraction):g}"
        a, b = (json.loads((out / run / name / "report.json").read_text())
                for run in ("one", "many"))
        print(f"  {name}: predicted {a['predicted_ms']:.4f} ms (one worker), "
              f"{b['predicted_ms']:.4f} ms ({FLAGS.workers} workers); same network: "
              f"{a['arch'] == b['arch']}")


if __name__ == "__main__":
    cli.run(main)
