"""`python -m tfnas.search`: flags → SearchConfig → search → arch.json and report.json.

The defaults are the Single-Path NAS setting (Stamoulis et al. Sec. 4): the `single_path`
space priced by the authors' Pixel 1 runtime model, ImageNet from TFDS, 8 epochs at batch
1024, kernel-subset dropout in the first 6 epochs; so `python -m tfnas.search --tpu=NAME
--target_ms=80` runs the paper's search for an 80 ms phone (as
`flags/imagenet_pixel1_80ms.flags` spells out), and every other setting is flags away.

Flags are checked (and budgets tested for feasibility against the space) before TensorFlow
loads, so a bad command stops at once with one line and exit code 2; `--dry_run` prints the
search's configuration and stops there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tfnas.errors import TfnasError
from tfnas.run.rundir import StopOnSignal, exit_when_interrupted
from tfnas.search.command import (SearchRequest, cell_meter, config_from_flags,
                                  profile_device, request_from_flags)
from tfnas.search.flags import define_flags, run_settings, train_settings
from tfnas.search.loop import Search
from tfnas.space import architecture_from_dict

__all__ = ["config_from_flags", "define_flags", "main", "request_from_flags"]


def main(argv: list[str]) -> None:
    from absl import flags

    from tfnas.run import distribute

    f = flags.FLAGS
    request = request_from_flags(f)  # bad flags stop here
    precision = distribute.resolve_precision(f.precision, f.tpu)
    role = distribute.planned_role(f.strategy, f.tpu)
    if role.workers > 1 and f.device:
        raise TfnasError("--device with --strategy=multi_worker: time the table first "
                         "(tools/build_lut.py --device=...), search with --latency_table=FILE, "
                         "and measure the result with tools/benchmark.py")
    if f.dry_run:
        print(json.dumps({**request.summary(), "precision": precision, "tpu": f.tpu,
                          "device": f.device, "workers": role.workers}, indent=1))
        return
    from tfnas.run import rundir

    if not role.chief:
        return _work_beside_chief(f, request, precision, role)

    # one writer per run directory, and a rerun must be the same search (before any work)
    with rundir.claim(f.model_dir, run_settings(f), overwrite=f.overwrite,
                      what="search") as run:
        train_run = (rundir.claim(Path(f.model_dir) / "train", train_settings(f),
                                  overwrite=f.overwrite, what="training")
                     if f.train_after_search else None)
        try:
            report = _search_and_train(f, request, precision, run, train_run)
        finally:
            if train_run is not None:
                train_run.release()
    arch = architecture_from_dict(report["arch"])
    print(arch.table())
    print(_summary(report, f.model_dir))


def _search_and_train(f: Any, request: SearchRequest, precision: str, run: Any,
                      train_run: Any) -> dict[str, Any]:
    """The search (unless the run directory holds it finished), then the training."""
    from tfnas import cli
    from tfnas.run import distribute, files

    report_path = Path(f.model_dir) / "report.json"
    if run.finished:
        print(f"{f.model_dir} holds this search, finished: its result follows "
              "(--overwrite to search again)", flush=True)
        report = json.loads(report_path.read_text())
        if train_run is None or train_run.finished:
            return report
    cli.import_tensorflow_quietly()
    strategy = distribute.prepare(precision, f.tpu, f.deterministic, f.strategy)
    if not run.finished:
        meter = None
        cells = "eval_space" in request.settings
        if f.device and cells:  # the predictor's or cell table's units on that device
            meter = cell_meter(f, request.settings["eval_space"])
        elif f.device:  # build (or complete) the device's table, then search on it
            meter = profile_device(f, request.space)
        config = request.config(request.device_latency() if f.device and not cells else None)
        search = Search(config, strategy)
        with exit_when_interrupted():
            report = search.run(StopOnSignal())
        if meter is not None:  # the network, measured (and matched) on the device it is for
            from tfnas.latency.profiler import measure_network

            report = search.match_measured(report, lambda a: measure_network(a, meter))
        run.finish()
    if train_run is not None:
        from tfnas.train import command as train

        arch = architecture_from_dict(report["arch"])
        model_dir = str(Path(f.model_dir) / "train")
        train_config = train.config_from_flags(f, arch, f.dataset, model_dir, f.seed,
                                               request.settings["jit_compile"],
                                               prefix="train_")
        report["train"] = (train.finished_report(train_run, model_dir)
                           or train.train_in(train_run, train_config, strategy))
        report["train"].pop("arch", None)
        files.write_text(report_path, json.dumps(report, indent=1) + "\n")
    return report


def _work_beside_chief(f: Any, request: SearchRequest, precision: str,
                       role: Any) -> None:
    """A worker other than the chief (`tfnas.run.distribute`): the same search and training
    steps, from the chief's checkpoints; the chief owns the run directory and its outputs."""
    from tfnas import cli
    from tfnas.run import distribute, rundir

    keep = not f.overwrite  # (with --overwrite the chief moves the old run aside)
    record = rundir.peek(f.model_dir, run_settings(f) if keep else None, "search")
    train_record = (rundir.peek(Path(f.model_dir) / "train",
                                train_settings(f) if keep else None, "training")
                    if f.train_after_search else None)
    if record and record.get("finished") and (
            not f.train_after_search or (train_record and train_record.get("finished"))):
        print(f"worker {role.index}: {f.model_dir} holds this run, finished (the chief "
              "reports it)", flush=True)
        return
    cli.import_tensorflow_quietly()
    strategy = distribute.prepare(precision, f.tpu, f.deterministic, f.strategy)
    with exit_when_interrupted():
        stop = StopOnSignal()
        report = Search(request.config(None), strategy).run(stop)
        if f.train_after_search:
            from tfnas.train import command as train
            from tfnas.train import trainer

            arch = architecture_from_dict(report["arch"])
            config = train.config_from_flags(f, arch, f.dataset,
                                             str(Path(f.model_dir) / "train"), f.seed,
                                             request.settings["jit_compile"], prefix="train_")
            trainer.train(config, strategy, stop)
    print(f"worker {role.index} of {role.workers}: done; the chief wrote {f.model_dir}",
          flush=True)


def _summary(report: dict[str, Any], model_dir: str) -> str:
    """The closing lines: budgets (target, predicted, measured), the solver's changes, where
    files went."""
    lines = []
    for b in report["budgets"]:
        sign = "≤" if b["kind"] == "max" else "="
        line = (f"{b['name']}: target {sign} {b['target']:g} {b['unit']}, predicted "
                f"{b['predicted']:.4g} ({b['error'] * 100:+.1f}%)")
        if b.get("measured") is not None:
            line += f", measured {b['measured']:.4g} ({b['measured_error'] * 100:+.1f}%)"
        lines.append(line + ("" if b["holds"] else "  (missed)"))
    lug = report.get("lug")
    if lug:
        lines.append(f"lookup graph {lug['path']}: device budget ≤ {lug['device_budget']:g}, "
                     f"searched at {lug['search_budget']:.4g}; the derived network has "
                     f"{lug['derived']:.4g} M {lug['metric']}"
                     + ("" if lug["holds"] else "  (missed)"))
    if report.get("measured_networks"):
        tried = report["measured_networks"]
        lines.append(f"measured: the first network was {tried[0]['measured']:.4g} ms against "
                     f"{tried[0]['predicted']:.4g} predicted; solved again for the measured "
                     f"latency, {len(tried) - 1} more network(s) measured ("
                     + ", ".join(f"{t['measured']:.4g}" for t in tried[1:]) + " ms)")
    if report.get("repaired"):
        moves = [f"{m.get('where') or 'layer %d' % m['layer']} {m['before']}→{m['after']}"
                 for m in report["repaired"]["moves"]]
        lines.append(f"solver: {len(moves)} layer(s) or node(s) changed to meet the budgets "
                     f"({', '.join(moves)}); the search's own network was "
                     + ", ".join(f"{b['error_before_repair'] * 100:+.1f}% off its {b['name']} "
                                 "budget" for b in report["budgets"]))
    if not report["budgets"]:
        measured = (f", measured {report['measured_ms']:.4g} ms"
                    if report.get("measured_ms") is not None else "")
        lines.append(f"predicted {report['cost_metric']}: {report['predicted_cost']:.4g} "
                     f"{report['cost_unit']}{measured}")
    lines.append(f"search took {report['search_seconds']:.0f} s; wrote {model_dir}/"
                 "arch.json and report.json")
    if report.get("train"):
        from tfnas.train import command as train

        lines.append(train.summary(report["train"], f"{model_dir}/train"))
    return "\n".join(lines)


if __name__ == "__main__":
    from tfnas import cli

    define_flags()
    cli.run(main)  # flags are checked before TensorFlow loads
