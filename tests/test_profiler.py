"""Profiling a space into a latency table: every row measured once, resumable, usable."""

from __future__ import annotations

import json

import pytest

from tfnas.costs import CostModel
from tfnas.errors import TfnasError
from tfnas.latency.devices import LocalDevice
from tfnas.latency.meter import Meter, default_reference
from tfnas.latency.profiler import profile
from tfnas.latency.table import LatencyTable
from tfnas.space import Architecture, get_space


class Stop(Exception):
    pass


def quick_meter(space, group=2):
    """A fast meter for tests: few runs, no minimum time, groups of two."""
    return Meter(LocalDevice(), runs=3, warmup=1, min_seconds=0.0, group=group, repeats=1,
                 reference=default_reference(space))


def test_interrupted_profile_measures_only_the_missing_rows_when_run_again(tmp_path):
    space = get_space("tiny")
    out = tmp_path / "lut.json"
    first: list[str] = []

    def stop_after_five(key, stats):
        first.append(key)
        if len(first) == 5:
            raise Stop  # as if the process were killed after the 5th row was saved

    with pytest.raises(Stop):
        profile(space, quick_meter(space), out, progress=False, on_row=stop_after_five)
    saved = LatencyTable.load(out)
    skips = [sig for sig in space.signatures() if sig.op.is_skip]  # 0 ms, never timed
    assert len(saved.rows) - len(skips) + len(saved.fixed_parts) == 5

    second: list[str] = []
    meter = quick_meter(space)
    table = profile(space, meter, out, progress=False,
                    on_row=lambda key, ms: second.append(key))
    # the second run measured in the first one's units: same reference latency
    assert meter.reference_ms == saved.device["reference_ms"] > 0
    expected = len(space.signatures()) - len(skips) + 2  # timed signatures, stem and head
    assert len(second) == expected - 5 and not set(first) & set(second)
    assert len(table.rows) == len(space.signatures())
    assert set(table.fixed_parts) == {"stem", "head"}
    assert table.fixed_ms == pytest.approx(sum(table.fixed_parts.values()))
    # a third run has nothing left to measure
    third: list[str] = []
    profile(space, quick_meter(space), out, progress=False,
            on_row=lambda key, ms: third.append(key))
    assert third == []
    # the table carries device metadata and per-row statistics, and serves the search
    data = json.loads(out.read_text())
    assert data["device"]["threads"] == 1 and data["device"]["dtype"] == "float32"
    assert all(data["stats"][key]["runs"] >= 3 for key in data["stats"])
    assert data["device"]["statistic"] == "p10" and data["device"]["reference"]["ops"]
    costs = CostModel.from_table(space, table)
    big = Architecture.uniform(space, "mbconv_k5_e6")
    small = Architecture.uniform(space, "mbconv_k3_e3")
    assert costs.of(big) == pytest.approx(table.cost(big))
    assert table.cost(small) > table.fixed_ms > 0


def test_table_of_another_device_is_not_completed(tmp_path):
    out = tmp_path / "lut.json"
    LatencyTable({}, 0.0, {"device": "Pixel 1", "threads": 1, "dtype": "float32"}).save(out)
    with pytest.raises(TfnasError, match="was measured on"):
        profile(get_space("tiny"), quick_meter(get_space("tiny")), out, progress=False)


def test_calibration_fit_and_its_use_in_the_search_costs():
    space = get_space("tiny")
    table = LatencyTable.from_flops(space, ms_per_mflop=1.0)
    archs = [Architecture.sample(space, s) for s in range(6)]
    raw = [table.cost(a) for a in archs]
    table.fit_calibration(raw, [1.05 * r + 0.2 for r in raw])  # 5% low plus 0.2 ms
    assert table.scale == pytest.approx(1.05) and table.offset == pytest.approx(0.2)
    for arch in archs:  # the per-layer cost model folds the affine correction in exactly
        assert CostModel.from_table(space, table).of(arch) == pytest.approx(
            table.calibrated_cost(arch))
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.calibrated_cost(archs[0]) == pytest.approx(table.calibrated_cost(archs[0]))


def test_calibration_learns_the_per_layer_overhead_rows_carry():
    """Each row is timed as a model of its own and carries the interpreter's per-call
    overhead, which a whole network pays once: networks with fewer MBConv layers (skips) read
    slower than an affine fit of the raw sum says. The calibration learns it per layer."""
    space = get_space("tiny")
    table = LatencyTable.from_flops(space, ms_per_mflop=1.0)
    archs = [Architecture.sample(space, s) for s in range(16)]
    layers = [sum(not op.is_skip for op in a.ops) for a in archs]
    assert len(set(layers)) > 1
    measured = [0.9 * table.cost(a) + 0.05 - 0.01 * n for a, n in zip(archs, layers)]
    table.fit_calibration([table.cost(a) for a in archs], measured, layers)
    assert table.scale == pytest.approx(0.9) and table.offset == pytest.approx(0.05)
    assert table.per_layer == pytest.approx(-0.01)
    cost = CostModel.from_table(space, table)
    for arch, ms in zip(archs, measured):
        assert cost.of(arch) == pytest.approx(ms) == pytest.approx(table.calibrated_cost(arch))
    # too few networks for three parameters: the affine fit, no per-layer term
    table.fit_calibration([table.cost(a) for a in archs[:4]], measured[:4], layers[:4])
    assert table.per_layer == 0.0


def test_build_lut_and_validate_latency_tools(tmp_path):
    from conftest import run_tool

    lut = tmp_path / "lut.json"
    quick = ("--runs=3", "--warmup=1", "--min_seconds=0", "--repeats=1")
    built = run_tool("build_lut.py", "--space=tiny", f"--out={lut}", *quick,
                     "--calibration_archs=3")
    assert built.returncode == 0, built.stderr[-2000:]
    table = LatencyTable.load(lut)
    assert table.calibrated and len(table.calibration["measured_ms"]) == 3
    again = run_tool("build_lut.py", "--space=tiny", f"--out={lut}", *quick,
                     "--calibration_archs=3")
    assert again.returncode == 0 and "profiling" not in again.stderr  # nothing left to do
    predictor = tmp_path / "predictor.json"
    trained = run_tool("train_predictor.py", "--space=tiny", "--num_archs=10", "--steps=200",
                       f"--latency_table={lut}", f"--out={predictor}", *quick)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "held-out 2: MAPE" in trained.stdout
    dataset = json.loads((tmp_path / "predictor.dataset.json").read_text())
    assert dataset["measurement"]["reference_ms"] == table.device["reference_ms"]
    checked = run_tool("validate_latency.py", "--space=tiny", f"--latency_table={lut}",
                       f"--predictor={predictor}", "--num_archs=3", *quick,
                       f"--out={tmp_path / 'val'}")
    assert checked.returncode == 0, checked.stderr[-2000:]
    report = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert report["num_archs"] == 3 and len(report["architectures"]) == 3
    assert {"raw_mape", "calibrated_mape", "predictor_mape", "rmse_ms"} <= set(report)
    assert report["predictor_mape"] >= 0
    seen = {tuple(ops) for ops in table.calibration["archs"] + dataset["archs"]}
    assert not {tuple(r["ops"]) for r in report["architectures"]} & seen  # unseen networks
    assert (tmp_path / "val" / "validation.png").stat().st_size > 1000


def test_the_tools_chain_on_a_network_of_cells(tmp_path):
    """Issue 21 on a small network of cells: a latency dataset, the per-edge table calibrated
    on it (in its units), a predictor with the table prior, and validation on unseen
    networks, by the tools a user runs."""
    from conftest import run_tool
    from tfnas.latency.cell_table import CellLatencyTable

    net = ("--space=darts28", "--cells=3", "--init_channels=4", "--nodes=1")
    quick = ("--runs=3", "--warmup=1", "--min_seconds=0", "--repeats=1")
    data = tmp_path / "lpm.dataset.json"
    lpm = run_tool("train_predictor.py", *net, "--num_archs=6", "--steps=100",
                   "--hidden=8", "--cell_sampling=mixed", f"--out={tmp_path / 'lpm.json'}",
                   *quick)
    assert lpm.returncode == 0, lpm.stderr[-2000:]
    lut = tmp_path / "cell_lut.json"
    built = run_tool("build_lut.py", *net, f"--calibration_dataset={data}", f"--out={lut}",
                     *quick)
    assert built.returncode == 0, built.stderr[-2000:]
    table = CellLatencyTable.load(lut)
    dataset = json.loads(data.read_text())
    assert table.calibrated and len(table.calibration["archs"]) == 6
    assert table.device["reference_ms"] == dataset["measurement"]["reference_ms"]
    own = run_tool("train_predictor.py", *net, "--num_archs=6", "--steps=100", "--hidden=8",
                   "--cell_sampling=mixed", f"--latency_table={lut}", f"--dataset={data}",
                   f"--out={tmp_path / 'own.json'}", *quick)
    assert own.returncode == 0 and "prior_decay" in own.stdout, own.stderr[-2000:]
    checked = run_tool("validate_latency.py", *net, f"--latency_table={lut}",
                       f"--predictor={tmp_path / 'lpm.json'},{tmp_path / 'own.json'}",
                       "--num_archs=3", *quick, f"--out={tmp_path / 'val'}")
    assert checked.returncode == 0, checked.stderr[-2000:]
    report = json.loads((tmp_path / "val" / "validation.json").read_text())
    assert set(report["predictors"]) == {"lpm.json", "own.json"}
    genotypes = [r["genotype"] for r in report["architectures"]]
    assert len(genotypes) == 3 and not [g for g in genotypes if g in dataset["archs"]]
    assert "lpm.json MAPE" in checked.stdout and "own.json MAPE" in checked.stdout


def test_a_table_refuses_a_space_whose_stem_or_head_differs(tmp_path):
    """Rows are keyed by signature, the fixed part is one number: a table measured with 10
    classes must not price a 1000-class head (or a 5-class one)."""
    space = get_space("tiny")
    out = tmp_path / "lut.json"
    profile(space, quick_meter(space), out, progress=False)
    table = LatencyTable.load(out)
    table.check_covers(space)
    other = get_space("tiny", num_classes=5)  # the same layers, another classifier
    with pytest.raises(TfnasError, match=r"stem and head .* \(num_classes 10, not 5\)"):
        table.check_covers(other)
    with pytest.raises(TfnasError, match="num_classes 10, not 5"):
        CostModel.from_table(other, table)
    with pytest.raises(TfnasError, match="num_classes 10, not 5"):
        profile(other, quick_meter(other), out, progress=False)


def test_a_device_table_calibrated_now_anchors_the_meter_without_timing_its_anchors(tmp_path):
    """`--device` profiling (the search command): the calibration networks it has just
    measured are the anchors, timed now; profiled again (a complete table), they are not."""
    from types import SimpleNamespace

    from tfnas.search.command import profile_device

    flags = SimpleNamespace(device="local", threads=1, profile_runs=3, profile_seconds=0.0,
                            profile_repeats=1, latency_table=None, model_dir=str(tmp_path),
                            calibration_archs=3)
    space = get_space("tiny")
    meter = profile_device(flags, space)
    assert len(meter.anchors) == 3 and meter.last_anchoring[1] == 1.0
    again = profile_device(flags, space)  # nothing measured: the anchors must be timed
    assert again.anchors == meter.anchors and again.last_anchoring is None
