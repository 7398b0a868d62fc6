"""`python -m tfnas.sweep`: one search per latency target on one table, each derived network
trained, exported and timed on the device, and the Pareto table and plot of accuracy against
measured latency; or one search per params / FLOPs budget, and DCA-NAS' lookup graph.

    python -m tfnas.sweep --flagfile=flags/quickstart.flags --target_fractions=0.2,0.5,0.8 \
        --model_dir=runs/sweep [--parallel=2]
    python -m tfnas.sweep --space=darts_search --method=dca_nas --norepair \
        --notrain_after_search --budgets_mparams=1,1.5,2,2.5 --model_dir=runs/lug

With `--budgets_mparams` (or `--budgets_mflops`) each search has one of those budgets
(`MODEL_DIR/mparams_B`), and MODEL_DIR/lug.json records each budget against the cost of the
network its search derived (before the solver): the lookup graph `--lug` reads
(`tfnas.search.lug`; with `--norepair`, DCA-NAS' own pipeline).

Every flag of `python -m tfnas.search` is accepted and passed on to each target's search
(`MODEL_DIR/fraction_F` or `MODEL_DIR/target_Tms`), with `--train_after_search` on; the
target lists replace a `--target_ms` / `--target_fraction` (e.g. one in a flag file). The
device's table is profiled once, before any search starts; the searches then run `--parallel`
at a time (each is resumable: a SIGTERM stops them all, saved, and the same command resumes
every unfinished target where it stopped). When all are done, each trained network is exported
to float32 TFLite (`model.tflite` in its target's folder) and all are timed together on the
device (one run, interleaved, in the table's units), and MODEL_DIR/pareto.csv, pareto.json and
pareto.png are written.

Several sweep processes started with the same flags on one MODEL_DIR (on one host, or on
hosts sharing the folder) are workers of one sweep: each target is searched by the first
worker that takes its lock (`.sweep.lock` in its folder), the others skip it; a worker with
nothing left waits for the others' targets and takes over one whose worker stopped or died
(its search resumes from its checkpoint). The table is profiled, and the Pareto table
written, by one worker at a time (a lock in MODEL_DIR): the first profiles, the others find
the table complete; each worker writes the Pareto table once every target is done.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
SWEEP_LOCK = ".sweep.lock"  # in a target's folder: the sweep worker that runs it; in
# MODEL_DIR: held while a worker profiles the table or writes the Pareto table
SWEEP_FLAGS = ("target_fractions", "targets_ms", "budgets_mparams", "budgets_mflops",
               "parallel")
# list flag → (the search flag each value sets, its folder prefix, the lowest value allowed)
_LISTS = {"target_fractions": ("target_fraction", "fraction_", None),
          "targets_ms": ("target_ms", "target_", 0.0),
          "budgets_mparams": ("max_mparams", "mparams_", 0.0),
          "budgets_mflops": ("max_mflops", "mflops_", 0.0)}


def _define_flags() -> None:
    from tfnas.search.flags import define_flags

    define_flags()
    FLAGS.set_default("model_dir", "runs/sweep")
    FLAGS.set_default("train_after_search", True)
    flags.DEFINE_list("target_fractions", None, "Latency targets as fractions of the space's "
                      "range (see --target_fraction), e.g. 0.2,0.5,0.8.")
    flags.DEFINE_list("targets_ms", None, "Latency targets in ms, e.g. 40,60,80.")
    flags.DEFINE_list("budgets_mparams", None, "Params budgets (M), one search each; writes "
                      "the lookup graph MODEL_DIR/lug.json (DCA-NAS).")
    flags.DEFINE_list("budgets_mflops", None, "FLOPs budgets (M multiply-adds), one search "
                      "each; writes the lookup graph MODEL_DIR/lug.json.")
    flags.DEFINE_integer("parallel", 1, "Searches run at the same time (each uses the host's "
                         "cores: more than one helps only with cores to spare; latency "
                         "measured during a search then shares the host with the others, the "
                         "final timing does not).", lower_bound=1)


def _targets() -> list[tuple[str, str]]:
    """(folder name, search flag) per target or budget; one clear error for bad lists."""
    from tfnas.errors import TfnasError

    given = [name for name in _LISTS if FLAGS[name].value is not None]
    if len(given) != 1:
        raise TfnasError("give the targets with one of " + ", ".join(f"--{n}" for n in _LISTS))
    (name,) = given
    flag, prefix, low = _LISTS[name]
    targets = []
    for text in FLAGS[name].value:
        try:
            value = float(text)
        except ValueError:
            raise TfnasError(f"--{name}: {text!r} is not a number") from None
        if (low is None and not 0 <= value <= 1) or (low is not None and value <= low):
            raise TfnasError(f"--{name}: {text} is outside " + ("[0, 1]" if low is None else
                                                                 "(0, inf)"))
        folder = f"{prefix}{value:g}" + ("ms" if name == "targets_ms" else "")
        if any(folder == f for f, _ in targets):
            raise TfnasError(f"--{name}: {text} is given twice")
        targets.append((folder, f"--{flag}={value:g}"))
    return targets


def _passed_on(model_dir: Path) -> list[str]:
    """The search flags set on the command line (or in a flag file), for every target."""
    own = set(SWEEP_FLAGS) | {"model_dir", "dry_run", "flagfile", "train_after_search"} | {
        flag for name, (flag, _, _) in _LISTS.items() if FLAGS[name].value is not None}
    args = []
    for name in list(FLAGS):
        flag = FLAGS[name]
        if name == flag.name and flag.present and name not in own and _is_search_flag(name):
            args.append(flag.serialize())
    if FLAGS.device and not FLAGS.latency_table:  # every target times on one table
        args.append(f"--latency_table={model_dir / 'lut.json'}")
    return args + ["--train_after_search" if FLAGS.train_after_search
                   else "--notrain_after_search"]


def _is_search_flag(name: str) -> bool:
    module = FLAGS.find_module_defining_flag(name, "")
    return module.startswith("tfnas.")


def _done(folder: Path) -> bool:
    report = folder / "report.json"
    if not report.exists():
        return False
    done = json.loads(report.read_text())
    return "arch" in done and (not FLAGS.train_after_search or "train" in done)


def _claim(folder: Path) -> Any:
    """The target's sweep lock (`.sweep.lock` in its folder), or None when another sweep
    worker holds it: that worker runs the target."""
    from tfnas.errors import TfnasError
    from tfnas.run import rundir

    try:
        return rundir.lock(folder, name=SWEEP_LOCK)
    except TfnasError:
        return None


def _run_searches(model_dir: Path, targets: list[tuple[str, str]], args: list[str]) -> None:
    """Runs the targets' searches, `--parallel` at a time; SIGTERM / SIGINT stop them (each
    saves first) and exit 143. Other sweep processes on the same MODEL_DIR (this host or
    others sharing the folder) are workers of the same sweep: each target is run by the one
    that takes its lock first; the others skip it, wait for it at the end, and take it over
    if its worker dies (its search then resumes from its checkpoint)."""
    from tfnas.errors import TfnasError

    pending = [(name, flag) for name, flag in targets if not _done(model_dir / name)]
    for name, _ in targets:
        if _done(model_dir / name):
            print(f"{name}: done before, kept", flush=True)
    running: dict[str, tuple[subprocess.Popen, Any, Any]] = {}
    elsewhere: dict[str, str] = {}  # targets other workers run: name → flag
    stop = {"signal": None}

    def forward(signum: int, _: Any) -> None:
        stop["signal"] = signum
        for process, _, _ in running.values():
            process.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    failed = []
    said_waiting = False
    while pending or running or elsewhere:
        while pending and len(running) < FLAGS.parallel and stop["signal"] is None:
            name, flag = pending.pop(0)
            folder = model_dir / name
            claim = _claim(folder)
            if claim is None:
                elsewhere[name] = flag
                print(f"{name}: another sweep worker runs it", flush=True)
                continue
            if _done(folder):  # finished by another worker meanwhile
                claim.close()
                print(f"{name}: done by another worker, kept", flush=True)
                continue
            log = (folder / "sweep.log").open("a")
            command = [sys.executable, "-m", "tfnas.search", *args, flag,
                       f"--model_dir={folder}"]
            print(f"{name}: searching ({' '.join(command[3:])}); log {folder / 'sweep.log'}",
                  flush=True)
            running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT),
                             log, claim)
        time.sleep(0.5)
        for name, (process, log, claim) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            claim.close()
            del running[name]
            if process.returncode == 0:
                print(f"{name}: {_summary(model_dir / name)}", flush=True)
            elif stop["signal"] is None:
                failed.append(name)
                tail = (model_dir / name / "sweep.log").read_text().strip().splitlines()
                print(f"{name}: failed ({tail[-1] if tail else 'no output'})", flush=True)
        if stop["signal"] is not None and not running:
            print("sweep stopped; every target's search saved its progress: run the same "
                  "command to resume", flush=True)
            raise SystemExit(143)
        if elsewhere and not pending and not running:  # the others' targets: wait, or take
            if not said_waiting:
                print(f"waiting for {', '.join(elsewhere)} (other sweep workers)", flush=True)
                said_waiting = True
            time.sleep(2)
            for name, flag in list(elsewhere.items()):
                folder = model_dir / name
                if _done(folder):
                    print(f"{name}: {_summary(folder)} (another worker)", flush=True)
                    del elsewhere[name]
                    continue
                claim = _claim(folder)
                if claim is not None:  # its worker stopped or died: this one goes on with it
                    claim.close()
                    print(f"{name}: its worker stopped; taking it over", flush=True)
                    del elsewhere[name]
                    pending.append((name, flag))
    if failed:
        raise TfnasError(f"{len(failed)} target(s) failed ({', '.join(failed)}): see their "
                         "sweep.log; run the same command again to retry them")


def _summary(folder: Path) -> str:
    report = json.loads((folder / "report.json").read_text())
    latency = [b for b in report["budgets"] if b.get("timed")]
    parts = []
    if latency:
        b = latency[0]
        parts.append(f"target {b['target']:.4g} ms, predicted {b['predicted']:.4g}")
        if b.get("measured") is not None:
            parts.append(f"measured {b['measured']:.4g}")
    parts += [f"{b['name']} {b['predicted']:.4g} {b['unit']} (budget ≤ {b['target']:g}, the "
              f"search's own network {b['before_repair']:.4g})"
              for b in report["budgets"] if not b.get("timed")]
    if report.get("train"):
        parts.append(f"top-1 {report['train']['top1']:.4f}")
    return ", ".join(parts)


def _export_and_time(model_dir: Path, targets: list[tuple[str, str]], meter: Any
                     ) -> list[dict[str, Any]]:
    """Exports each trained network to float32 TFLite and times them all together with
    `meter` (the device's, anchored to its table; None: not timed)."""
    import keras

    from tfnas.deploy import export
    from tfnas.run.files import write_bytes
    from tfnas.space import Architecture, architecture_from_dict

    rows, models = [], []
    for name, _ in targets:
        folder = model_dir / name
        report = json.loads((folder / "report.json").read_text())
        arch = architecture_from_dict(report["arch"])
        tflite = folder / "model.tflite"
        if report.get("train"):
            trained = folder / "train" / "model.tflite"  # --train_tflite wrote it
            if tflite.exists():
                flatbuffer = tflite.read_bytes()
            else:
                if report["train"].get("tflite") and trained.exists():
                    flatbuffer = trained.read_bytes()
                else:
                    model = keras.models.load_model(folder / "train" / "model.keras")
                    flatbuffer = export.to_tflite(model, arch=arch)
                write_bytes(tflite, flatbuffer)
            models.append(flatbuffer)
        elif meter is not None:  # not trained: time the architecture (fresh weights)
            from tfnas.latency import timing_models

            models.append(timing_models.network(arch))
        latency = [b for b in report["budgets"] if b.get("timed")]
        rows.append({"target": name, "target_ms": latency[0]["target"] if latency else None,
                     "predicted_ms": report.get("predicted_ms"),
                     "top1": report["train"]["top1"] if report.get("train") else None,
                     "params": report["params"], "mflops": report["flops"] / 1e6,
                     "method": report["method"],
                     "ops": list(arch.op_names) if isinstance(arch, Architecture)
                     else arch.brief()})
    if meter is None:
        return rows
    print(f"timing {len(models)} exported network(s) together on {FLAGS.device}", flush=True)
    for row, ms in zip(rows, meter.measure(models)):
        row["measured_ms"] = ms
    return rows


def main(argv: list[str]) -> None:
    from tfnas.search import pareto
    from tfnas.errors import TfnasError
    from tfnas.search.command import profile_device, request_from_flags

    targets = _targets()
    model_dir = Path(FLAGS.model_dir)
    args = _passed_on(model_dir)
    replaced = [flag for flag, _, _ in _LISTS.values()]
    for name, flag in targets:  # every target's own search checked, before any work
        key, value = flag.removeprefix("--").split("=")
        saved = {k: FLAGS[k].value for k in (*replaced, "model_dir")}
        if key in ("target_ms", "target_fraction"):
            FLAGS.target_ms, FLAGS.target_fraction = None, None
        FLAGS[key].value, FLAGS.model_dir = float(value), str(model_dir / name)
        try:
            request_from_flags(FLAGS)
        except TfnasError as err:
            raise TfnasError(f"{name}: {err}") from None
        finally:
            for k, v in saved.items():
                FLAGS[k].value = v
    model_dir.mkdir(parents=True, exist_ok=True)
    cli.import_tensorflow_quietly()  # after the checks: bad flags stop in a second
    from tfnas.run import rundir

    meter = None
    if FLAGS.device:  # one table for every target, profiled before they start (by the
        if not FLAGS.latency_table:  # first worker; the others then find it complete)
            FLAGS.latency_table = str(model_dir / "lut.json")
        with rundir.lock(model_dir, name=SWEEP_LOCK, wait=True):
            meter = profile_device(FLAGS, cli.space_from_flags(FLAGS))
    began = time.time()
    _run_searches(model_dir, targets, args)
    with rundir.lock(model_dir, name=SWEEP_LOCK, wait=True):  # one worker writes at a time
        if FLAGS.budgets_mparams or FLAGS.budgets_mflops:
            _write_lug(model_dir, targets)
        rows = _export_and_time(model_dir, targets, meter)
        timed = [r for r in rows if r.get("measured_ms") is not None and r["top1"] is not None]
        if timed:
            pareto.write_table(rows, model_dir / "pareto")
            pareto.plot(timed, model_dir / "pareto.png",
                        targets=[r["target_ms"] for r in timed if r["target_ms"]])
    print(f"\n{'target':16s} {'target ms':>10s} {'predicted':>10s} {'measured':>10s} "
          f"{'top-1':>7s} {'params':>8s}")
    for r in rows:
        print(f"{r['target']:16s} {_fmt(r['target_ms'])} {_fmt(r['predicted_ms'])} "
              f"{_fmt(r.get('measured_ms'))} {_fmt(r['top1'], 7, '.4f')} {r['params']:8,d}")
    where = (f"wrote {model_dir}/pareto.csv, pareto.json and pareto.png" if timed else
             "no device to time on (--device) or nothing trained: no Pareto table")
    print(f"sweep of {len(targets)} target(s) took {time.time() - began:.0f} s; {where}")


def _write_lug(model_dir: Path, targets: list[tuple[str, str]]) -> None:
    """MODEL_DIR/lug.json: each search's budget against its derived network's cost."""
    from tfnas.search.lug import LookupGraph

    metric = "params" if FLAGS.budgets_mparams else "flops"
    points = []
    for name, _ in targets:
        report = json.loads((model_dir / name / "report.json").read_text())
        (budget,) = [b for b in report["budgets"] if b["name"] == metric]
        points.append((budget["target"], budget["before_repair"]))
    LookupGraph(metric, tuple(points)).save(model_dir / "lug.json")
    print(f"lookup graph ({metric}: search budget → derived network): "
          + ", ".join(f"{k:g} → {d:.4g}" for k, d in sorted(points))
          + f"; wrote {model_dir}/lug.json", flush=True)


def _fmt(value: Any, width: int = 10, spec: str = ".4g") -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:{width}{spec}}"


if __name__ == "__main__":
    _define_flags()
    cli.run(main)  # the searches run in their own processes
