"""The Single-Path search: XLA step, distributed step, resume after SIGTERM, λ, bad flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (ROOT, TINY_SEARCH, error_lines, search_error, small_space,
                      terminate_after)
from tfnas.costs import CostModel
from tfnas.search.objectives import Constraint, Objective
from tfnas.search import Search, SearchConfig
from tfnas.space import get_space


def _config(tmp_path, name: str, **changes) -> SearchConfig:
    space = get_space("tiny")
    values = dict(space=space, dataset="digits", cost_model=CostModel.flops(space),
                  objective=Objective("log", 0.3), model_dir=str(tmp_path / name), epochs=3,
                  batch_size=64, seed=0, verbose=False)
    values.update(changes)
    return SearchConfig(**values)


def _search_command(model_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tfnas.search", *TINY_SEARCH,
            "--epochs=3", "--lam=0.3", "--kernel_dropout=0.1",
            "--dropout_epochs=2", "--checkpoint_every=1000", f"--model_dir={model_dir}",
            *extra]


@pytest.mark.e2e
# Hard Gumbel and proxyless gather the chosen path's weights into one MBConv: no conditional
# (XLA's CPU backend compiles convolutions inside one as plain loops: a one-layer search step
# with keras.ops.switch did not compile in 12 minutes here).
# softmax and gumbel share the gradient α step (gumbel the gathered path) with proxyless: by hand
@pytest.mark.parametrize("method", ["superkernel", pytest.param("softmax", marks=pytest.mark.slow),
                                    pytest.param("gumbel", marks=pytest.mark.slow), "proxyless",
                                    pytest.param("proxyless_reinforce", marks=pytest.mark.slow)])
def test_train_step_compiles_with_xla(tmp_path, method):
    space = small_space()  # a params budget too: its multiplier updates inside the step
    search = Search(_config(tmp_path, "xla", space=space, cost_model=CostModel.flops(space),
                            jit_compile=True, method=method, batch_size=32, rl_samples=2,
                            constraints=(Constraint(CostModel.params(space), 0.0015, "max"),)))
    assert search.path_select == "gather"
    search.lam.assign(0.3)
    search.arch_on.assign(1.0)
    before = [np.asarray(v).copy() for v in search.architecture_variables]
    weights = [np.asarray(v).copy() for v in search.weight_variables[:3]]
    images, labels = next(iter(search.data.train(0)))
    terms = search.train_step(images, labels)
    assert np.isfinite(terms["loss"]) and np.isfinite(terms["cost"])
    if method == "superkernel":  # all groups start on: the dearest network's MFLOPs
        assert terms["cost"] == pytest.approx(0.38928, rel=1e-5)
    after = [np.asarray(v) for v in search.architecture_variables]
    assert all(np.any(a != b) for a, b in zip(after, before))  # α / thresholds updated in XLA
    assert float(search.multipliers[0]) > 0  # over the params budget: λ rose in the step
    assert any(np.any(np.asarray(v) != w) for v, w in zip(search.weight_variables, weights))


@pytest.mark.e2e
def test_first_step_is_the_same_under_mirrored_strategy():
    out = subprocess.run([sys.executable, str(ROOT / "tests" / "distributed_step.py")],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    default, mirrored = result["default"], result["mirrored"]
    assert default["replicas"] == 1 and mirrored["replicas"] == 2
    for key in ("loss", "ce", "cost"):
        assert abs(default[key] - mirrored[key]) < 1e-4, key
    grads = np.array(default["grads"])
    assert np.abs(grads).max() > 1e-3  # the comparison is not between zeros
    assert np.abs(grads - np.array(mirrored["grads"])).max() < 1e-4
    # without synchronised batch norm each replica normalises its half-batch: not the same
    # (off by 3% of the largest gradient on the two-layer space, where synced agree to 1e-8)
    unsynced = np.array(result["mirrored_unsynced"]["grads"])
    assert np.abs(grads - unsynced).max() > 0.01 * np.abs(grads).max()
    # hard Gumbel's one path runs gathered across replicas (a switch's batch norm would need a
    # merge_call inside a conditional), its batch norm synchronised: the one-process step
    gumbel, alone = result["mirrored_gumbel"], result["default_gumbel"]
    assert gumbel["path_select"] == "gather" and np.isfinite(gumbel["loss"])
    assert abs(gumbel["loss"] - alone["loss"]) < 1e-4
    grads = np.array(alone["grads"])
    assert np.abs(grads).max() > 1e-4
    assert np.abs(grads - np.array(gumbel["grads"])).max() < 1e-4 * max(1, np.abs(grads).max())


@pytest.mark.long
@pytest.mark.e2e
def test_search_killed_mid_epoch_resumes_to_the_same_architecture(tmp_path):
    """A latency target on a FLOPs table, so the budget's multiplier and the late window (the
    last epoch here) are part of what must resume: the run is stopped inside that window."""
    from tfnas.latency.table import LatencyTable

    table = tmp_path / "lut.json"
    LatencyTable.from_flops(get_space("tiny"), ms_per_mflop=1.0).save(table)
    budget = (f"--latency_table={table}", "--target_fraction=0.5")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = subprocess.run(_search_command(tmp_path / "straight", *budget),
                              capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert straight.returncode == 0, straight.stderr[-2000:]

    killed_dir = tmp_path / "killed"
    # wait for epoch 1 to end, then stop inside epoch 2 (the late window)
    rest = terminate_after(_search_command(killed_dir, *budget), "epoch 1:", 0.7)
    assert "checkpoint saved" in rest and "stopped at epoch 2 step" in rest
    assert not (killed_dir / "arch.json").exists()
    assert json.loads((killed_dir / "late_window.json").read_text())["states"][-1]["steps"] > 0

    resumed = subprocess.run(_search_command(killed_dir, *budget), capture_output=True,
                             text=True, timeout=600, cwd=ROOT, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming search" in resumed.stdout
    assert (killed_dir / "arch.json").read_text() == (tmp_path / "straight" / "arch.json"
                                                       ).read_text()
    window = [json.loads((d / "late_window.json").read_text())["states"][-1]
              for d in (killed_dir, tmp_path / "straight")]
    assert window[0] == window[1]
    # every step logged once, with the values of the uninterrupted run
    assert (killed_dir / "search_steps.csv").read_text() == (
        tmp_path / "straight" / "search_steps.csv").read_text()
    # the same trajectory, not just the same decisions: last epoch's validation and cost
    # (CE and accuracy: averaged over every step of the epoch, before and after the stop)
    assert _last_log_row(killed_dir)[1:6] == _last_log_row(tmp_path / "straight")[1:6]
    report = json.loads((killed_dir / "report.json").read_text())
    assert report["late_window"]["steps"] == 22  # the last epoch's steps, once each


def _last_log_row(model_dir: Path) -> list[str]:
    return (model_dir / "search_log.csv").read_text().splitlines()[-1].split(",")


@pytest.mark.slow  # the budget tests (test_budget.py) steer the cost in the default suite
def test_larger_lambda_derives_a_cheaper_network(tmp_path):
    small = Search(_config(tmp_path, "small", objective=Objective("log", 0.02))).run()
    large = Search(_config(tmp_path, "large", objective=Objective("log", 1.0))).run()
    assert large["predicted_cost"] < small["predicted_cost"]
    for report in (small, large):
        for name in ("arch.json", "report.json", "search_log.csv"):
            assert (Path(report_dir(tmp_path, report)) / name).exists()
        assert report["flops"] / 1e6 == pytest.approx(report["predicted_cost"], rel=1e-9)


def report_dir(tmp_path: Path, report: dict) -> Path:
    return tmp_path / ("small" if report["lam"] == 0.02 else "large")


@pytest.mark.parametrize("args,message", [
    (["--dataset=mnist"], "unknown dataset 'mnist'"),
    (["--latency_table=pixel1"], "no rows for 22 signature(s) of space 'tiny'"),
    (["--lam=0"], "must be positive"),
    (["--lam=-0.5"], "must be positive"),
    (["--target_ms=0"], "target_ms must be positive"),
    (["--target_ms=-80"], "target_ms must be positive"),
    (["--cost=exp"], "--cost"),
    (["--space=huge"], "unknown search space"),
    (["--cost_metric=latency"], "needs --latency_table"),
    (["--device=phone"], "unknown device 'phone'"),
    (["--latency_model=mlp"], "expected table or predictor:PATH"),
    (["--latency_model=predictor:/nowhere.json"], "does not exist"),
    (["--device=local", "--latency_table=pixel1"], "is a built-in table"),  # issue 18, 5
    (["--train_after_search", "--train_epochs=1"],
     "--train_warmup_epochs must be in [0, epochs)"),
])
def test_bad_flags_stop_before_training_with_one_line(tmp_path, args, message):
    model_dir = tmp_path / "run"
    error = search_error(*args, model_dir=model_dir)
    assert message in error and "\n" not in error, error
    assert not model_dir.exists()


def test_a_bad_flag_exits_2_with_one_line_before_any_work(tmp_path):
    """The exit-code contract of the command itself (the matrix above runs in-process)."""
    model_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH,
                          f"--model_dir={model_dir}", "--target_ms=-80"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = error_lines(out.stderr)
    assert lines == ["error: --target_ms must be positive, got -80.0"], lines
    assert "starting search" not in out.stdout and not model_dir.exists()


@pytest.mark.parametrize("arrays,args,message", [
    ({"y_train": np.full(64, 10)}, [], "y_train has labels 10..10, the space has 10 classes"),
    ({"x_train": np.zeros((64, 28, 28, 3), np.uint8),
      "x_test": np.zeros((16, 28, 28, 3), np.uint8)}, ["--space=fashion"],
     "holds RGB images and the space takes 1 channel: set --input_channels=3"),
    ({"y_test": None}, [], "has no y_test"),
])
def test_a_bad_npz_dataset_stops_before_any_work_with_one_line(tmp_path, arrays, args,
                                                                 message):
    """Checked with the flags: before the device is profiled or anything is written."""
    given = {"x_train": np.zeros((64, 28, 28), np.uint8), "y_train": np.zeros(64, np.uint8),
             "x_test": np.zeros((16, 28, 28), np.uint8), "y_test": np.zeros(16, np.uint8),
             **arrays}
    np.savez(tmp_path / "d.npz", **{k: v for k, v in given.items() if v is not None})
    model_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH,
                          f"--dataset=npz:{tmp_path / 'd.npz'}", "--device=local",
                          f"--model_dir={model_dir}", *args], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not model_dir.exists()


def test_bfloat16_step_keeps_decisions_and_cost_in_float32(tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        search = Search(_config(tmp_path, "bf16"))
        search.lam.assign(0.3)
        images, labels = next(iter(search.data.train(0)))
        terms = search.train_step(images, labels)
        assert search.model.get_layer("layer00").compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(terms["loss"])
    assert terms["cost"] == pytest.approx(1.226368, rel=1e-6)  # float32 cost, not bf16


@pytest.mark.e2e
def test_search_on_a_device_builds_its_table_and_measures_the_result(tmp_path):
    model_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH, "--epochs=1",
                          "--device=local", "--profile_runs=3", "--profile_seconds=0",
                          "--profile_repeats=1", "--calibration_archs=2",
                          "--target_fraction=0.5", "--target_tolerance=0.0001",
                          f"--model_dir={model_dir}"], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    table = json.loads((model_dir / "lut.json").read_text())
    assert table["device"]["kind"] == "local" and len(table["calibration"]["measured_ms"]) == 2
    report = json.loads((model_dir / "report.json").read_text())
    assert report["cost_metric"] == "latency" and report["measured_ms"] > 0
    assert report["predicted_ms"] == pytest.approx(report["predicted_cost"])
    assert report["latency_model"] == f"table {model_dir / 'lut.json'}"
    # a first network off its target as measured is solved again for the measured latency;
    # the one kept is the arch.json written, with its own measurement
    arch = json.loads((model_dir / "arch.json").read_text())
    tried = report.get("measured_networks")
    if tried is None:
        assert abs(report["measured_ms"] / report["budgets"][0]["target"] - 1) <= 1e-4
    else:
        assert "solved again for the measured latency" in out.stdout
        kept = [t for t in tried if t["ops"] == report["arch"]["ops"]]
        assert kept and kept[0]["measured"] == report["measured_ms"]
        assert report["arch"] == arch


@pytest.mark.e2e
def test_search_with_a_latency_predictor_reports_its_prediction(tmp_path):
    from tfnas.latency import predictor
    from tfnas.latency.table import LatencyTable
    from tfnas.space import Architecture, get_space

    space = get_space("tiny")
    table = LatencyTable.from_flops(space, ms_per_mflop=1.0)
    archs = [Architecture.sample(space, s) for s in range(40)]
    model = predictor.fit(space, archs, [table.cost(a) for a in archs], steps=500)
    path = tmp_path / "predictor.json"
    model.save(path)
    model_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH, "--epochs=1",
                          f"--latency_model=predictor:{path}", "--lam=0.5",
                          f"--model_dir={model_dir}"], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((model_dir / "report.json").read_text())
    arch = Architecture.from_dict(report["arch"])
    assert report["cost_metric"] == "latency" and report["latency_model"] == f"predictor {path}"
    assert report["predicted_ms"] == pytest.approx(model.of(arch), rel=1e-6)


def _dry_run(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "tfnas.search", *args, "--dry_run"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_the_bare_command_is_the_single_path_recipe():
    """`python -m tfnas.search --tpu=NAME --target_ms=80` runs the paper's setting: the same
    configuration as the flag file (but for where it writes)."""
    bare = _dry_run("--tpu=my-tpu", "--target_ms=80")
    recipe = _dry_run("--flagfile=flags/imagenet_pixel1_80ms.flags", "--tpu=my-tpu")
    assert recipe.pop("model_dir") == "runs/imagenet_pixel1_80ms"
    assert bare.pop("model_dir") == "runs/search"
    assert bare == recipe
    assert bare["latency_source"] == "table pixel1" and bare["space"]["name"] == "single_path"
    assert bare["dataset"] == "tfds:imagenet2012" and bare["batch_size"] == 1024
    assert bare["precision"] == "mixed_bfloat16" and bare["jit_compile"]
    assert bare["dropout_epochs"] == 6 and bare["constraints"][0]["budget"] == "latency = 80 ms"


def test_the_bare_command_without_a_tpu_stops_with_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tfnas.search", "--tpu=my-tpu",
                          "--target_ms=80", f"--model_dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach TPU 'my-tpu'"), lines


def test_a_target_beyond_the_pixel1_space_names_its_range(tmp_path):
    """With the defaults (single_path priced by pixel1), 200 ms is above every network:
    30.63 ms (every skippable layer skipped, the rest MBConv3x3-e3) to 131.46 ms."""
    out = subprocess.run([sys.executable, "-m", "tfnas.search", "--target_ms=200",
                          f"--model_dir={tmp_path / 'run'}"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 2
    lines = error_lines(out.stderr)
    assert lines == ["error: --target_ms=200 is above the dearest network (nothing to search "
                     "for): the single_path space spans 30.63 to 131.5 ms of latency"], lines


@pytest.mark.e2e
# (dca_nas: the cell network, its cells' edges, the ops they share, the bottleneck's expansion)
@pytest.mark.parametrize("method", ["superkernel", "softmax", "proxyless", "dca_nas"])
def test_a_search_checkpoint_restores_every_weight_and_optimizer_slot(tmp_path, method):
    """Keras 3 keeps the layers a list holds (a mixed op's paths, a search cell's edges, the
    cells of the cell network) out of TensorFlow's checkpoint unless they are tracked there:
    every variable of the supernet and of both optimizers must come back on resume."""
    import numpy as np

    from tfnas.costs import exact_sources
    from tfnas.search import Search, SearchConfig
    from tfnas.space.cells import get_network

    cells = method in ("darts", "dca_nas")
    space = (get_network("darts_search", cells=3, init_channels=8, input_size=8,
                         input_channels=1) if cells else small_space())

    def search(seed, where):
        return Search(SearchConfig(
            space=space, dataset="digits" if cells else "synthetic",
            cost_model=exact_sources(space, 2)["flops"], objective=None, model_dir=str(where),
            method=method, batch_size=16, seed=seed, nodes=2, verbose=False))

    first = search(0, tmp_path / "a")
    rng = np.random.default_rng(0)
    owned = [first.model.variables, first.optimizer.variables,
             first.arch_optimizer.variables if first.arch_optimizer else []]
    for group in owned:
        for v in group:
            v.assign(rng.normal(size=v.shape).astype(v.dtype) if v.dtype != "int64" else
                     np.full(v.shape, 7, "int64"))
    path = first.checkpoint.save(str(tmp_path / "a" / "ckpt"))
    second = search(1, tmp_path / "b")
    second.checkpoint.restore(path).assert_existing_objects_matched()
    again = [second.model.variables, second.optimizer.variables,
             second.arch_optimizer.variables if second.arch_optimizer else []]
    for group, restored in zip(owned, again):
        assert len(group) == len(restored)
        lost = [v.path for v, w in zip(group, restored)
                if not np.array_equal(v.numpy(), w.numpy())]
        assert not lost, f"{len(lost)} of {len(group)} not restored, e.g. {lost[:3]}"
