"""Latency of networks of DARTS cells (issue 21): the per-edge table, the predictor's table
prior, LA-DARTS' expected latency by sampling, and latency budgets solved on cells."""

from __future__ import annotations

import numpy as np
import pytest

from tfnas.costs import CellCost
from tfnas.errors import TfnasError
from tfnas.latency import cell_table, predictor, timing_models
from tfnas.latency.devices import BenchmarkResult
from tfnas.latency.meter import Meter
from tfnas.search import budget, cell_budget
from tfnas.search.objectives import Constraint
from tfnas.space.cells import CELL_OPS, CellArchitecture, get_network, placeholder_genotype

NETWORK = get_network("darts28", cells=5, init_channels=8)


def _wired_latency(arch):
    """A synthetic device: FLOPs plus a wiring term no per-edge sum can see (a node fed
    by two convolutions costs extra)."""
    flops = CellCost.counting("flops", arch.network, arch.genotype.normal.nodes).of(arch)
    convs = [op.startswith(("sep", "dil")) for op, _ in arch.genotype.normal.edges]
    both = sum(convs[i] and convs[i + 1] for i in range(0, len(convs), 2))
    return 0.2 + flops / 20 + 0.05 * both


@pytest.fixture(scope="module")
def lpm():
    rng = np.random.default_rng(0)
    archs = [CellArchitecture.sample(NETWORK, rng, 4) for _ in range(300)]
    ms = [_wired_latency(a) for a in archs]
    return predictor.fit(NETWORK, archs, ms, hidden=(32,), steps=800), archs, ms


@pytest.fixture(scope="module")
def supernet():
    """One search network for the tests below (building it takes seconds); each sets how it
    prices latency."""
    import tensorflow as tf

    from tfnas.search.cell_supernet import CellSupernet

    net = CellSupernet(get_network("darts28_search", cells=3, init_channels=4), nodes=4)
    net(tf.zeros((1, 28, 28, 1)))
    return net


def test_edge_sum_of_a_counting_cost_is_its_exact_count():
    params = CellCost.counting("params", NETWORK, 4)
    for seed in range(5):
        arch = CellArchitecture.sample(NETWORK, seed, 4)
        assert params.sum_of(arch) == pytest.approx(arch.params() / 1e6, rel=1e-9)


class ByteDevice:
    """Fake device: a model's latency is its size in kB (distinct models, distinct ms)."""

    name = "fake:bytes"

    def benchmark_many(self, paths, *, runs, warmup, min_seconds):
        out = []
        for path in paths:
            ms = len(open(path, "rb").read()) / 1000
            out.append(BenchmarkResult(ms, ms, 0.0, ms, ms, runs, p10_ms=ms))
        return out

    def describe(self):
        return {"device": self.name, "threads": 1}


def test_cell_table_prices_the_placeholder_network_as_measured_and_round_trips(tmp_path):
    meter = Meter(ByteDevice(), group=1, repeats=1, min_seconds=0.0, reference=None)
    table = cell_table.profile(NETWORK, 2, meter, tmp_path / "t.json", progress=False)
    sigs = cell_table.signatures(NETWORK, 2)
    assert set(table.rows) == set(sigs)
    assert all(ms == 0 for s, ms in table.rows.items()
               if s.op == "skip_connect" and s.stride == 1)  # the identity is no op
    placeholder = CellArchitecture(NETWORK, placeholder_genotype(2))
    cost = CellCost.from_table(table)
    placeholder_ms = len(timing_models.network(placeholder)) / 1000
    assert cost.of(placeholder) == pytest.approx(placeholder_ms)
    loaded = cell_table.CellLatencyTable.load(tmp_path / "t.json")
    arch = CellArchitecture.sample(NETWORK, 3, 2)
    assert CellCost.from_table(loaded).of(arch) == pytest.approx(cost.of(arch))
    assert cost.of(arch) == pytest.approx(table.raw_ms(arch))
    assert cost.of(arch) != pytest.approx(placeholder_ms)  # its edges are priced
    archs = [CellArchitecture.sample(NETWORK, s, 2) for s in range(6)]
    loaded.fit_calibration(archs, [2 * table.raw_ms(a) + 0.5 for a in archs])
    assert CellCost.from_table(loaded).of(arch) == pytest.approx(2 * cost.of(arch) + 0.5)


def test_cell_table_of_another_network_is_one_error(tmp_path):
    path = tmp_path / "t.json"
    cell_table.CellLatencyTable(NETWORK, 2, {}, None, {"device": "x"}).save(path)
    meter = Meter(ByteDevice(), group=1, repeats=1, min_seconds=0.0, reference=None)
    with pytest.raises(TfnasError, match="the table of another network of cells"):
        cell_table.profile(NETWORK, 3, meter, path, progress=False)
    with pytest.raises(TfnasError, match="misses"):
        CellCost.from_table(cell_table.CellLatencyTable.load(path))


def test_table_prior_starts_a_cell_predictor_at_the_table():
    archs = [CellArchitecture.sample(NETWORK, s, 4) for s in range(40)]
    flops = CellCost.counting("flops", NETWORK, 4)
    table = CellCost(("latency"), "ms", NETWORK, 4, 0.3 + flops.fixed / 20,
                     tuple(tuple(tuple(v / 20 for v in row) for row in kind)
                           for kind in flops.tables))
    ms = [table.of(a) for a in archs]
    started = predictor.fit(NETWORK, archs, ms, table=table, steps=1, reduce_cell=True)
    blind = predictor.fit(NETWORK, archs, ms, steps=1, reduce_cell=True)
    fresh = [CellArchitecture.sample(NETWORK, 100 + s, 4) for s in range(20)]
    truth = [table.of(a) for a in fresh]
    assert predictor.errors(started.predict(fresh), truth)["mape"] < 1.0
    assert predictor.errors(blind.predict(fresh), truth)["mape"] > 5.0


def test_sampled_networks_keep_two_edges_per_node_and_never_none():
    import keras
    from keras import ops

    from tfnas.search.cell_supernet import sampled_one_hots

    alpha = np.random.default_rng(0).normal(size=(14, len(CELL_OPS))).astype("float32")
    alpha[:, CELL_OPS.index("none")] = 5.0  # `none` the strongest: still never drawn
    codes = ops.convert_to_numpy(sampled_one_hots(ops.softmax(alpha, -1), None, 4, 50,
                                                  keras.random.SeedGenerator(1)))
    assert codes.shape == (50, 14, len(CELL_OPS))
    assert np.all(codes[:, :, CELL_OPS.index("none")] == 0)
    for rows in (range(0, 2), range(2, 5), range(5, 9), range(9, 14)):
        assert np.allclose(codes[:, rows.start:rows.stop].sum(axis=(1, 2)), 2)
    assert len({np.round(c).tobytes() for c in codes}) > 40  # different networks


@pytest.mark.parametrize("samples", [20, 0])
def test_expected_latency_moves_alpha_and_the_hard_variant_prices_the_derived_cells(
        lpm, supernet, samples):
    import tensorflow as tf

    model, _, _ = lpm
    net = supernet
    net.latency_samples, net.latency_noise = samples, 0.0
    with tf.GradientTape() as tape:
        latency = net.expected_cost(model)
    grad = tape.gradient(latency, net.alphas["normal"])
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0
    if samples == 0:
        derived = CellArchitecture(NETWORK, net.derive())
        assert float(latency) == pytest.approx(model.of(derived), rel=1e-4)
    else:  # the mean over networks sampled from α, near the mean of random ones at α ≈ 0
        _, _, ms = lpm
        assert float(latency) == pytest.approx(np.mean(ms), rel=0.1)


def test_latency_noise_changes_the_prediction_from_step_to_step(lpm, supernet):
    net = supernet
    net.latency_samples, net.latency_noise = 0, 0.05
    values = [float(net.expected_cost(lpm[0])) for _ in range(6)]
    assert np.std(values) / np.mean(values) > 0.005


def test_latency_targets_on_cells_are_met_by_the_predictor(lpm):
    model, archs, _ = lpm
    low, high = budget.cost_range(model, NETWORK)
    predicted = model.predict(archs)
    assert low < high and np.mean((predicted >= low - 1e-9) & (predicted <= high + 1e-9)) > 0.97
    rng = np.random.default_rng(1)
    scores = {k: np.log(rng.dirichlet(np.ones(len(CELL_OPS)), size=14))
              for k in ("normal", "reduce")}
    for fraction in (0.2, 0.8):
        target = low + fraction * (high - low)
        answer, _ = cell_budget.solve(archs[0], scores, [Constraint(model, target, "target")],
                                      0.01)
        assert model.of(answer) == pytest.approx(target, rel=0.01)
    ceiling = Constraint(model, low + 0.3 * (high - low), "max")
    answer, _ = cell_budget.solve(archs[0], scores, [ceiling], 0.01)
    assert model.of(answer) <= ceiling.target
    with pytest.raises(TfnasError, match="below the cheapest network"):
        budget.check_feasible(Constraint(model, low * 0.9, "target", flag="--target_ms"),
                              NETWORK)


def test_a_cell_network_that_misses_on_the_device_is_solved_again_for_it(lpm):
    """--device on a cell search: the device reads 12% above the predictor near the target;
    the budget is rescaled by the measured/predicted ratio and solved again until the measured
    network holds it."""
    model, archs, _ = lpm
    low, high = budget.cost_range(model, NETWORK)
    rng = np.random.default_rng(1)
    scores = {k: np.log(rng.dirichlet(np.ones(len(CELL_OPS)), size=14))
              for k in ("normal", "reduce")}
    target = Constraint(model, low + 0.5 * (high - low), "target")
    first, _ = cell_budget.solve(archs[0], scores, [target], 0.02)

    def device(arch):
        return 1.12 * model.of(arch)

    kept, tried = budget.match_measured(archs[0], budget.Measured(first, model.of(first),
                                                                   device(first)),
                                        scores, [target], 0.02, device)
    assert tried[0].arch == first and len(tried) >= 2
    assert kept.measured == pytest.approx(target.target, rel=0.02)
    moved = budget.moves(archs[0], kept.arch, scores, [target])
    assert moved and all(m.where.split()[0] in ("normal", "reduce") for m in moved)


def test_a_meter_anchored_to_a_cell_table_rescales_to_its_units_and_records_the_anchors():
    """Cell networks drift against the small reference (5% in an hour here): the anchors,
    the table's calibration networks timed again, bring values back to the table's units."""
    model = timing_models.network
    archs = [CellArchitecture.sample(NETWORK, s, 2) for s in range(4)]
    stored = [2 * len(model(a)) / 1000 for a in archs]  # the table's day: twice as slow
    table = cell_table.CellLatencyTable(NETWORK, 2, {}, 1.0, {"device": "fake:bytes"},
                                        {"archs": [a.genotype.to_dict() for a in archs],
                                         "measured_ms": stored})
    placeholder = CellArchitecture(NETWORK, placeholder_genotype(2))
    meter = Meter(ByteDevice(), group=1, repeats=1, min_seconds=0.0, reference=placeholder)
    meter.anchor_to(table)
    other = CellArchitecture.sample(NETWORK, 9, 2)
    (value,) = meter.measure([model(other)])
    assert value == pytest.approx(2 * len(model(other)) / 1000)
    assert meter.anchor_scales == pytest.approx([2.0])
    again = Meter(ByteDevice())
    again.adopt({**meter.describe(), "reference": placeholder.to_dict()})
    assert [a for a, _ in again.anchors] == archs
