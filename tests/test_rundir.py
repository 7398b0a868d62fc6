"""Run directories: a rerun with other flags, two writers, damaged checkpoints and logs never
corrupt a run (issue 18's defects 1, 2, 3 and 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_SEARCH, error_lines
from tfnas.run import checkpoints, rundir
from tfnas.errors import TfnasError
from tfnas.space import get_space


def _search(model_dir: Path, table: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tfnas.search", *TINY_SEARCH, "--epochs=1", "--lam=0.3",
            f"--latency_table={table}", "--target_fraction=0.5", f"--model_dir={model_dir}",
            *extra]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def flops_table(tmp_path_factory) -> Path:
    from tfnas.latency.table import LatencyTable

    path = tmp_path_factory.mktemp("table") / "lut.json"
    LatencyTable.from_flops(get_space("tiny"), ms_per_mflop=1.0).save(path)
    return path


@pytest.mark.long
@pytest.mark.e2e
def test_a_rerun_with_other_flags_stops_and_a_finished_search_is_reported(tmp_path,
                                                                         flops_table):
    """Defect 1: a rerun with another target used to "resume" the old supernet, repair it to
    the new target and overwrite arch.json (then crash in training)."""
    run = tmp_path / "run"
    first = _run(_search(run, flops_table))
    assert first.returncode == 0, first.stderr[-2000:]
    # redirected output: one line per epoch, no progress bar of terminal codes (defect 7)
    assert "\x1b[" not in first.stdout and max(map(len, first.stdout.splitlines())) < 300
    arch = (run / "arch.json").read_text()
    stamp = (run / "arch.json").stat().st_mtime_ns

    other = _run(_search(run, flops_table, "--target_fraction=0.2", "--train_after_search",
                         "--train_epochs=2"))
    assert other.returncode == 2
    lines = error_lines(other.stderr)
    assert len(lines) == 1 and "target_fraction: 0.5 → 0.2" in lines[0], lines
    assert "--overwrite" in lines[0] and "starting" not in other.stdout
    assert (run / "arch.json").stat().st_mtime_ns == stamp and not (run / "train").exists()

    # the same flags: the finished search is reported, not run again; training may follow
    again = _run(_search(run, flops_table, "--train_after_search", "--train_epochs=2"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "holds this search, finished" in again.stdout
    assert "search:" not in again.stdout and "trained 2 epochs" in again.stdout
    assert (run / "arch.json").read_text() == arch
    assert json.loads((run / "report.json").read_text())["train"]["epochs"] == 2

    # --overwrite: the old run is moved aside whole, a new one starts
    fresh = _run(_search(run, flops_table, "--target_fraction=0.2", "--overwrite"))
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and (aside[0] / "train" / "train_report.json").exists()
    assert "moved the old search" in fresh.stdout and "starting search" in fresh.stdout
    settings = json.loads((run / "run.json").read_text())["settings"]
    assert settings["target_fraction"] == 0.2 and not (run / "train").exists()


@pytest.mark.long
@pytest.mark.e2e
def test_a_second_writer_stops_at_once_and_a_dead_writers_lock_is_taken_over(tmp_path,
                                                                           flops_table):
    """Defect 2: two processes on one --model_dir both ran, interleaving their logs."""
    run = tmp_path / "run"
    command = _search(run, flops_table, "--epochs=3")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in first.stdout:
        if line.startswith("starting search"):
            break
    began = time.time()
    second = _run(command)
    assert second.returncode == 2 and time.time() - began < 60
    lines = error_lines(second.stderr)
    assert len(lines) == 1 and f"in use by process {first.pid}" in lines[0], lines
    first.send_signal(signal.SIGKILL)  # dies holding the lock: the OS releases it
    first.wait(timeout=60)
    first.stdout.close()
    third = _run(command)
    assert third.returncode == 0, third.stderr[-2000:]
    rows = (run / "search_steps.csv").read_text().splitlines()[1:]
    steps = [tuple(r.split(",")[:2]) for r in rows]
    assert len(steps) == len(set(steps)) == 3 * 22  # every step once: 3 epochs of 22


def test_claim_checks_settings_and_names_every_difference(tmp_path):
    with rundir.claim(tmp_path / "a", {"epochs": 8, "space": {"width": 1.0}}) as run:
        assert not run.resumed and not run.finished
        run.finish()
    with pytest.raises(TfnasError, match=r"epochs: 8 → 4, space.width: 1.0 → 0.5"):
        rundir.claim(tmp_path / "a", {"epochs": 4, "space": {"width": 0.5}})
    with rundir.claim(tmp_path / "a", {"epochs": 8, "space": {"width": 1.0}}) as run:
        assert run.resumed and run.finished
    (tmp_path / "f").write_text("x")
    with pytest.raises(TfnasError, match="is a file, not a directory"):
        rundir.claim(tmp_path / "f", {})
    (tmp_path / "a" / "run.json").write_text("{garbage")
    with pytest.raises(TfnasError, match="is not a run record"):
        rundir.claim(tmp_path / "a", {"epochs": 8})
    with rundir.claim(tmp_path / "a", {"epochs": 8}, overwrite=True) as run:  # moved aside
        assert not run.resumed
    assert len(list(tmp_path.glob("a.old-*"))) == 1


def _saved(directory: Path, values: list[float]):
    import tensorflow as tf

    v = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(v=v)
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=2,
                                         checkpoint_name="ckpt")
    for value in values:
        v.assign(value)
        manager.save()
    v.assign(-1.0)
    return v, checkpoint


@pytest.mark.parametrize("damage", ["index", "data"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path, damage):
    """Defect 3: random bytes in ckpt-N.index or a truncated data file gave a traceback."""
    v, checkpoint = _saved(tmp_path, [1.0, 2.0, 3.0])  # keeps ckpt-2 (2.0) and ckpt-3 (3.0)
    if damage == "index":
        (tmp_path / "ckpt-3.index").write_bytes(np.random.default_rng(0).bytes(200))
    else:
        data = tmp_path / "ckpt-3.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:10])
    said = []
    manager, restored = checkpoints.open_manager(checkpoint, tmp_path, say=said.append)
    assert restored.endswith("ckpt-2") and float(v.numpy()) == 2.0
    assert len(said) == 1 and "ckpt-3 is unreadable" in said[0] and "resuming from ckpt-2" in \
        said[0]
    assert (tmp_path / "ckpt-3.index.damaged").exists()
    manager.save()  # the next save takes the damaged one's number, cleanly
    assert manager.latest_checkpoint.endswith("ckpt-3")


def test_a_garbage_state_file_resumes_from_the_newest_checkpoint(tmp_path):
    """Defect 3: garbage in the `checkpoint` file restarted the run from scratch silently."""
    v, checkpoint = _saved(tmp_path, [1.0, 2.0])
    (tmp_path / "checkpoint").write_text("garbage {{{")
    said = []
    manager, restored = checkpoints.open_manager(checkpoint, tmp_path, say=said.append)
    assert restored.endswith("ckpt-2") and float(v.numpy()) == 2.0
    assert len(said) == 1 and "unreadable" in said[0]
    assert manager.latest_checkpoint.endswith("ckpt-2")


def test_no_readable_checkpoint_is_one_error(tmp_path):
    v, checkpoint = _saved(tmp_path, [1.0])
    (tmp_path / "ckpt-1.index").write_bytes(b"\x00" * 64)
    with pytest.raises(TfnasError, match="no readable checkpoint .*--overwrite"):
        checkpoints.open_manager(checkpoint, tmp_path, say=lambda _: None)


def test_logs_cut_back_to_the_checkpoint_drop_torn_and_later_rows(tmp_path):
    """Defect 7: a resumed run wrote rows twice (or kept a torn one)."""
    from tfnas.run import csvlog
    from tfnas.search.records import StepLog

    path = tmp_path / "search_steps.csv"
    log = StepLog(path, [])
    for epoch, step in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        log.write(epoch, step, {"ce": 1.0 + step, "accuracy": 0.5}, [])
    log.flush()
    with path.open("a") as f:
        f.write("1,2,0.3")  # a torn row: the process died mid-write
    resumed = StepLog(path, [], position=(1, 1))
    assert [r["step"] for r in csvlog.read_rows(path)] == ["0", "1", "0"]
    assert resumed.epoch_means(1)["ce"] == 1.0  # the kept step of epoch 1
    resumed.write(1, 1, {"ce": 3.0, "accuracy": 1.0}, [])
    assert resumed.epoch_means(1) == {"ce": 2.0, "accuracy": 0.75}
    # a per-epoch log: the torn last line goes even when no whole row is cut
    epochs = tmp_path / "train_log.csv"
    csvlog.append_rows(epochs, ("epoch", "loss"), [{"epoch": 0, "loss": 1.5}])
    with epochs.open("a") as f:
        f.write("1,0.")
    csvlog.cut_epochs(epochs, ("epoch", "loss"), 1)
    assert epochs.read_text() == "epoch,loss\n0,1.5\n"


def test_epoch_ends_are_saved_so_that_saving_costs_a_twentieth_of_the_run():
    """Each save takes 0.2 s on a fake clock: after the first epoch end (always saved), an
    epoch end is saved once 4 s (0.2 / 0.05) have passed since the last save, and the last
    epoch end always; without a share (several workers), every epoch end."""
    now = [0.0]

    class Manager:
        saves: list[float] = []

        def save(self):
            self.saves.append(now[0])
            now[0] += 0.2

    saver = checkpoints.EpochCheckpoints(Manager(), saved_epochs=0, clock=lambda: now[0])
    saved = []
    for epoch in range(10):  # 1.5 s epochs
        now[0] += 1.5
        if saver.due(last=epoch == 9):
            saver.save(epochs=epoch + 1)
            saved.append(epoch + 1)
    assert saved == [1, 4, 7, 10]  # 1.5 + 3 x 1.5 ≥ 4 s after each save's end
    assert saver.saved_epochs == 10
    saver.save()  # a stop request saves at once, whatever the time; not an epoch's end
    assert saver.saved_epochs == 10 and len(Manager.saves) == 5
    every = checkpoints.EpochCheckpoints(Manager(), saved_epochs=3, share=None,
                                         clock=lambda: now[0])
    assert every.due() and every.saved_epochs == 3


def test_help_lists_every_flag_and_exits_0():
    """Defect 7: --help exited 1 and hid the --train_* flags; -h was unknown."""
    for option in ("--help", "-h"):
        out = _run([sys.executable, "-m", "tfnas.search", option])
        assert out.returncode == 0, out.stderr[-500:]
        assert "--train_epochs" in out.stdout and "--target_ms" in out.stdout
        assert "--input_size" in out.stdout and "--overwrite" in out.stdout
