"""`python -m tfnas.sweep`: targets searched, trained, exported and timed into a Pareto table;
stopped by SIGTERM and resumed; bad target lists one line."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY_SEARCH, error_lines

FAST_DEVICE = ("--device=local", "--profile_runs=3", "--profile_seconds=0",
               "--profile_repeats=1", "--calibration_archs=2")


def _sweep(model_dir, *args):
    return [sys.executable, "-m", "tfnas.sweep", *TINY_SEARCH, "--dataset=synthetic:256",
            "--epochs=2", "--train_epochs=1", "--train_warmup_epochs=0", *FAST_DEVICE, f"--model_dir={model_dir}", *args]


@pytest.mark.slow  # about 150 s: two searches, two trainings, each process started twice
def test_a_two_target_sweep_stops_on_sigterm_and_resumes_to_its_pareto_table(tmp_path):
    model_dir = tmp_path / "sweep"
    command = _sweep(model_dir, "--target_fractions=0.3,0.7")
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    # stop it once the first target's search has saved a checkpoint
    deadline = time.time() + 400
    while not list((model_dir / "fraction_0.3").glob("ckpt-*.index")):
        assert first.poll() is None, first.communicate()
        assert time.time() < deadline
        time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 143, err
    assert "run the same command to resume" in out
    assert not (model_dir / "pareto.csv").exists()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    log = (model_dir / "fraction_0.3" / "sweep.log").read_text()
    assert "resuming search" in log  # the stopped search went on where it was saved
    with (model_dir / "pareto.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["target"] for r in rows] == ["fraction_0.3", "fraction_0.7"]
    table = json.loads((model_dir / "lut.json").read_text())
    for row in rows:
        report = json.loads((model_dir / row["target"] / "report.json").read_text())
        assert float(row["top1"]) == report["train"]["top1"] > 0
        assert float(row["measured_ms"]) > 0 and float(row["params"]) == report["params"]
        assert (model_dir / row["target"] / "model.tflite").stat().st_size > 0
    assert float(rows[0]["target_ms"]) < float(rows[1]["target_ms"])
    assert table["calibration"]["measured_ms"]  # one table, profiled once for both
    assert (model_dir / "pareto.png").stat().st_size > 0
    assert json.loads((model_dir / "pareto.json").read_text())[0]["on_front"] in (True, False)


@pytest.mark.parametrize("args,message", [
    ([], "give the targets with one of --target_fractions, --targets_ms, --budgets_mparams"),
    (["--target_fractions=0.2", "--targets_ms=3"], "give the targets with"),
    (["--target_fractions=0.2,1.5"], "--target_fractions: 1.5 is outside [0, 1]"),
    (["--targets_ms=fast"], "--targets_ms: 'fast' is not a number"),
    (["--target_fractions=0.2,0.2"], "0.2 is given twice"),
    # a target the space cannot reach: the search's own check, named by its target
    (["--targets_ms=1000", "--latency_table=pixel1", "--space=single_path", "--device="],
     "target_1000ms: --target_ms=1000 is above the dearest network"),
    (["--space=darts_search", "--method=darts", "--budgets_mparams=2,0.0001", "--device="],
     "mparams_0.0001: --max_mparams=0.0001 is below the cheapest network"),
])
def test_bad_target_lists_are_one_line(tmp_path, args, message):
    out = subprocess.run(_sweep(tmp_path / "sweep", *args), cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "sweep").exists()


@pytest.mark.long
@pytest.mark.e2e
def test_two_sweep_workers_share_the_targets_and_one_takes_over_a_stopped_one(tmp_path):
    """Two sweep processes on one MODEL_DIR (as on two hosts sharing a folder): each target
    is searched by one of them; SIGTERM to the second mid-search saves its target, and the
    first, done with its own, takes it over and resumes it. All three results, each target's
    search started once and resumed at most once (issue 22, must-show 3)."""
    from tfnas.latency.table import LatencyTable
    from tfnas.space import get_space

    table = tmp_path / "lut.json"
    LatencyTable.from_flops(get_space("tiny"), ms_per_mflop=1.0).save(table)
    model_dir = tmp_path / "sweep"
    command = [sys.executable, "-m", "tfnas.sweep", *TINY_SEARCH, "--batch_size=128",
               "--epochs=3", "--checkpoint_every=2", f"--latency_table={table}",
               "--notrain_after_search", "--target_fractions=0.3,0.5,0.7",
               f"--model_dir={model_dir}"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    second = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 400
    taken = None
    while taken is None:  # the second worker's target, once it has saved a checkpoint
        assert time.time() < deadline and second.poll() is None
        for name in ("fraction_0.3", "fraction_0.5", "fraction_0.7"):
            folder = model_dir / name
            lock = folder / ".sweep.lock"
            if lock.exists() and str(second.pid) in lock.read_text() and list(
                    folder.glob("ckpt-*.index")):
                taken = name
        time.sleep(0.3)
    second.send_signal(signal.SIGTERM)
    out2, _ = second.communicate(timeout=300)
    assert second.returncode == 143, out2[-2000:]
    out1, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out1[-3000:]
    # (the first reaches it free, or waits for it held and takes it over when freed)
    assert f"{taken}: searching" in out1 or f"{taken}: its worker stopped; taking" in out1
    for name in ("fraction_0.3", "fraction_0.5", "fraction_0.7"):
        log = (model_dir / name / "sweep.log").read_text()
        assert (model_dir / name / "arch.json").exists()
        assert log.count("starting search") == 1, name  # searched once, never from scratch
        assert log.count("resuming search") == (1 if name == taken else 0), name
    assert "sweep of 3 target(s) took" in out1
