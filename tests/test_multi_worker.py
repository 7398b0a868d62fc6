"""Search and training across worker processes (MultiWorkerMirroredStrategy, two workers on
loopback): the same step as one process, only the chief writes, a killed worker resumes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_SEARCH


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_env(ports: list[int], index: int, scratch: Path) -> dict[str, str]:
    """The environment of worker `index`: TF_CONFIG, and a TMPDIR of its own (where a worker
    other than the chief keeps its scratch copies), to check it is left empty."""
    scratch.mkdir(parents=True, exist_ok=True)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch),
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                   "index": index}})}


def start_workers(command: list[str], tmp_path: Path, name: str) -> list[subprocess.Popen]:
    ports = free_ports(2)
    return [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, cwd=ROOT,
                             env=worker_env(ports, i, tmp_path / f"{name}_tmp{i}"))
            for i in range(2)]


def finish(procs: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@pytest.mark.e2e
def test_first_step_across_two_workers_is_the_one_process_step(tmp_path):
    """Loss, cost and threshold gradients of one global batch: two worker processes (sync
    batch norm across them, each half the batch) against one process (must-show 1)."""
    helper = [sys.executable, str(ROOT / "tests" / "multi_worker_step.py")]
    single = subprocess.Popen(helper + ["single"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
    workers = start_workers(helper, tmp_path, "step")
    chief_out, _ = finish(workers)
    one_out, err = single.communicate(timeout=600)
    assert single.returncode == 0, err[-3000:]
    one, two = json.loads(one_out), json.loads(chief_out.strip().splitlines()[-1])
    assert one["replicas"] == 1 and two["replicas"] == 2 and two["workers"] == 2
    for key in ("loss", "ce", "cost"):
        assert abs(one[key] - two[key]) < 1e-4, key
    grads = np.array(one["grads"])
    assert np.abs(grads).max() > 1e-3  # the comparison is not between zeros
    assert np.abs(grads - np.array(two["grads"])).max() < 1e-4


def _search(model_dir: Path, table: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tfnas.search", *TINY_SEARCH, "--batch_size=128",
            "--epochs=2", "--lam=0.3", "--checkpoint_every=3", f"--latency_table={table}",
            "--target_fraction=0.5", "--strategy=multi_worker", f"--model_dir={model_dir}",
            *extra]


@pytest.mark.long
@pytest.mark.e2e
def test_two_worker_search_killed_and_restarted_resumes_to_the_same_network(tmp_path):
    """The quickstart search (tiny, digits, superkernel, a latency target) on two workers:
    only the chief writes; SIGKILL of the other worker mid-search, then both restarted,
    ends on the arch.json of an uninterrupted two-worker run (must-show 1)."""
    from tfnas.latency.table import LatencyTable
    from tfnas.space import get_space

    table = tmp_path / "lut.json"
    LatencyTable.from_flops(get_space("tiny"), ms_per_mflop=1.0).save(table)
    straight = tmp_path / "straight"
    chief_out, worker_out = finish(start_workers(_search(straight, table), tmp_path, "a"))
    assert "2 replica(s) on 2 workers" in chief_out and "wrote" in chief_out
    assert "worker 1 of 2: done; the chief wrote" in worker_out
    assert not any((tmp_path / "a_tmp1").iterdir())  # the worker's scratch copies: removed
    assert {p.name for p in straight.iterdir()} >= {"arch.json", "report.json", "run.json",
                                                    "search_log.csv", "search_steps.csv"}
    steps = (straight / "search_steps.csv").read_text().splitlines()
    assert len(steps) == 1 + 2 * (1438 // 128)  # every step once: one writer

    killed = tmp_path / "killed"
    procs = start_workers(_search(killed, table), tmp_path, "b")
    deadline = time.time() + 300
    while not list(killed.glob("ckpt-2.index")):  # step 6 of 22 saved
        assert time.time() < deadline and procs[0].poll() is None, "no checkpoint came"
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)  # the worker dies mid-search...
    procs[1].wait(timeout=60)
    time.sleep(2)
    procs[0].send_signal(signal.SIGKILL)  # ...and the chief, stuck in an all-reduce, too
    procs[0].wait(timeout=60)
    assert not (killed / "arch.json").exists()
    chief_out, _ = finish(start_workers(_search(killed, table), tmp_path, "c"))
    assert "resuming search" in chief_out
    assert (killed / "arch.json").read_text() == (straight / "arch.json").read_text()
    assert (killed / "search_steps.csv").read_text().splitlines() == steps


@pytest.mark.parametrize("env,args,message", [
    ({}, ["--strategy=multi_worker"], "--strategy=multi_worker needs TF_CONFIG"),
    ({"TF_CONFIG": "{not json"}, ["--strategy=multi_worker"], "TF_CONFIG is not a usable"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker",
                                                                        "index": 3}})},
     ["--strategy=multi_worker"], "task worker 3: the cluster has 1 worker(s)"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                               "task": {"type": "worker", "index": 0}})},
     ["--strategy=multi_worker", "--device=local"], "--device with --strategy=multi_worker"),
    ({}, ["--strategy=multi_worker", "--tpu=local"], "is for CPU and GPU hosts"),
    ({}, ["--strategy=mesh"], "--strategy"),
])
def test_bad_multi_worker_settings_stop_with_one_line(tmp_path, monkeypatch, env, args,
                                                      message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH, *args,
                          f"--model_dir={tmp_path / 'run'}", "--dry_run"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env={**os.environ})
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.long
@pytest.mark.e2e
def test_two_worker_training_stops_together_on_one_sigterm_and_resumes(tmp_path):
    """Training across workers (its own loop: Keras' fit cannot run there): a SIGTERM to the
    worker that is not the chief stops both at the same step, saved; the same commands resume
    to the log of an uninterrupted run; one-process training follows the same curve."""
    arch = tmp_path / "arch.json"
    subprocess.run([sys.executable, "tools/make_arch.py", "--space=tiny", "--sample_seed=3",
                    f"--out={arch}"], check=True, cwd=ROOT, capture_output=True)

    def train(model_dir: Path) -> list[str]:
        return [sys.executable, "-m", "tfnas.train", f"--arch={arch}", "--dataset=digits",
                "--epochs=3", "--batch_size=128", "--warmup_epochs=0",
                "--strategy=multi_worker", f"--model_dir={model_dir}"]

    one = subprocess.Popen(train(tmp_path / "one")[:-2] + [f"--model_dir={tmp_path / 'one'}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    chief_out, worker_out = finish(start_workers(train(tmp_path / "straight"), tmp_path, "a"))
    assert "top-1" in chief_out and "worker 1 of 2: done" in worker_out
    assert one.wait(timeout=600) == 0, one.stdout.read()[-2000:]
    rows = (tmp_path / "straight" / "train_log.csv").read_text().splitlines()
    alone = (tmp_path / "one" / "train_log.csv").read_text().splitlines()
    assert len(rows) == len(alone) == 4
    for a, b in zip(rows[1:], alone[1:]):  # loss per epoch: batch norm per replica differs
        assert float(a.split(",")[1]) == pytest.approx(float(b.split(",")[1]), rel=0.05)

    stopped = tmp_path / "stopped"
    procs = start_workers(train(stopped), tmp_path, "b")
    for line in procs[1].stdout:  # the worker (not the chief) is asked to stop in epoch 1
        if line.startswith("starting training"):
            break
    deadline = time.time() + 300
    while not (stopped / "train_log.csv").exists() or len(
            (stopped / "train_log.csv").read_text().splitlines()) < 2:
        assert time.time() < deadline, "no epoch ended"
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGTERM)
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [143, 143], [o[-1500:] for o in outs]
    assert "stopped during epoch" in outs[0]  # the chief stopped too, at the same step
    finish(start_workers(train(stopped), tmp_path, "c"))
    assert (stopped / "train_log.csv").read_text().splitlines() == rows


def test_a_worker_on_a_run_of_other_settings_stops_with_the_chiefs_line(tmp_path):
    """A worker that is not the chief does not claim the run directory, but it checks the
    record as the chief does: other settings stop it at once instead of leaving it waiting
    for a chief that stopped."""
    from tfnas.run import rundir

    model_dir = tmp_path / "run"
    with rundir.claim(model_dir, {"space": "other"}):
        pass
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH,
                          "--strategy=multi_worker", f"--model_dir={model_dir}"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT,
                         env=worker_env([1, 2], 1, tmp_path / "tmp"))
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert "holds a search made with other settings" in lines[0]
