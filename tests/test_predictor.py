"""The MLP latency predictor: learns, generalises, round-trips, and gives search gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfnas.costs import CostModel
from tfnas.errors import TfnasError
from tfnas.latency import predictor
from tfnas.space import Architecture, get_space


def synthetic(space, count, seed):
    """Latencies that a table cannot give exactly: per-op costs plus one interaction."""
    rng = np.random.default_rng(seed)
    costs = rng.uniform(0.1, 1.0, (space.num_layers, len(space.ops)))
    archs = [Architecture.sample(space, rng) for _ in range(count)]
    x = [a.one_hot() for a in archs]
    return archs, [float((h * costs).sum() + 0.5 * h[2, 1] * h[3, 3] + 4.0) for h in x]


@pytest.mark.e2e
def test_fit_predicts_unseen_architectures_within_one_percent():
    space = get_space("single_path")
    archs, ms = synthetic(space, 400, seed=0)
    model = predictor.fit(space, archs[:320], ms[:320], steps=3000)
    held_out = predictor.errors(model.predict(archs[320:]), ms[320:])
    assert held_out["mape"] < 1.0, held_out
    constant = predictor.errors([np.mean(ms[:320])] * 80, ms[320:])
    assert held_out["mape"] < constant["mape"] / 5  # far better than guessing the mean


def table_and_archs(space, count, seed):
    """A random calibrated table of `space` and `count` random architectures."""
    from tfnas.latency.table import LatencyTable

    rng = np.random.default_rng(seed)
    rows = {sig: float(rng.uniform(0.1, 1.0)) for sig in space.signatures()}
    table = LatencyTable(rows, 2.0, calibration={"scale": 1.0, "offset": 0.0})
    return table, [Architecture.sample(space, rng) for _ in range(count)], rng


def test_a_table_prior_lets_few_measurements_reach_one_percent():
    space = get_space("single_path")
    table, archs, _ = table_and_archs(space, 130, seed=3)
    # the device is 6% slower than the table says, and two layers interact
    ms = [1.06 * table.cost(a) + 0.3 * a.one_hot()[2, 1] * a.one_hot()[3, 3] for a in archs]
    prior = predictor.fit(space, archs[:30], ms[:30], table=CostModel.from_table(space, table))
    scratch = predictor.fit(space, archs[:30], ms[:30])
    with_table = predictor.errors(prior.predict(archs[30:]), ms[30:])["mape"]
    alone = predictor.errors(scratch.predict(archs[30:]), ms[30:])["mape"]
    assert with_table < 1.0 and with_table < alone / 3, (with_table, alone)
    assert predictor.errors([table.cost(a) for a in archs[30:]], ms[30:])["mape"] > 4.0


def test_cross_validation_trusts_the_table_as_far_as_the_device_follows_it():
    space = get_space("tiny")
    table, archs, rng = table_and_archs(space, 60, seed=4)
    noise = rng.normal(1.0, 0.02, len(archs))
    prior = CostModel.from_table(space, table)
    options = dict(candidates=(0.01, 10.0), steps=300)
    # a device that is the table up to 2% noise: hold the predictor to the table
    follows = [float(n * table.cost(a)) for n, a in zip(noise, archs)]
    assert predictor.choose_prior_decay(space, archs, follows, prior, **options) == 10.0
    # a device on which one op is 40% dearer than its rows say: let the predictor move
    def dearer(a):
        return 0.4 * sum(table.rows[space.signature(i, op)] for i, op in enumerate(a.ops)
                         if op.name == "mbconv_k5_e6")

    strays = [float(n * (table.cost(a) + dearer(a))) for n, a in zip(noise, archs)]
    assert predictor.choose_prior_decay(space, archs, strays, prior, **options) == 0.01


def test_soft_cost_matches_predict_and_has_gradients():
    import tensorflow as tf

    space = get_space("tiny")
    archs, ms = synthetic(space, 60, seed=1)
    model = predictor.fit(space, archs, ms, steps=300)
    soft = float(model.soft_cost(archs[0].one_hot()))
    assert soft == pytest.approx(model.of(archs[0]), rel=1e-5)
    soft = tf.Variable(np.full((space.num_layers, len(space.ops)), 1 / len(space.ops),
                               np.float32))
    with tf.GradientTape() as tape:
        cost = model.soft_cost(soft)
    grad = tape.gradient(cost, soft).numpy()
    assert np.all(np.isfinite(grad)) and np.count_nonzero(grad) > grad.size // 2


def test_predictor_gradient_reaches_every_supernet_threshold():
    import tensorflow as tf

    from tfnas.search import supernet

    space = get_space("tiny")
    archs, ms = synthetic(space, 60, seed=2)
    model = predictor.fit(space, archs, ms, steps=300)
    net = supernet.build(space, threshold_init=0.0, seed=0)
    net(np.zeros((1, 16, 16, 3), np.float32))
    arch = supernet.derive(net, space)
    vars_ = supernet.architecture_variables(net)
    with tf.GradientTape() as tape:
        cost = supernet.expected_cost(net, model)
    assert float(cost) == pytest.approx(model.of(arch), rel=1e-5)  # hard forward pass
    grads = tape.gradient(cost, vars_)
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)


def test_save_load_round_trip_and_clear_errors(tmp_path):
    space = get_space("tiny")
    archs, ms = synthetic(space, 30, seed=3)
    model = predictor.fit(space, archs, ms, steps=100)
    model.measurement = {"device": "local:test", "statistic": "p10"}
    path = tmp_path / "p.json"
    model.save(path)
    again = predictor.LatencyPredictor.load(path)
    assert np.allclose(again.predict(archs), model.predict(archs))
    assert again.measurement["statistic"] == "p10"
    with pytest.raises(TfnasError, match="does not exist"):
        predictor.LatencyPredictor.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TfnasError, match="not a tfnas latency predictor"):
        predictor.LatencyPredictor.load(tmp_path / "bad.json")
    with pytest.raises(TfnasError, match="for space 'tiny'"):
        model.predict([Architecture.sample(get_space("cifar"), 0)])
    with pytest.raises(TfnasError, match="at least 2"):
        predictor.fit(space, archs[:1], ms[:1])


@pytest.mark.parametrize("hidden,activation", [
    ((128, 64), "relu"), pytest.param((112, 256, 64), "sigmoid", marks=pytest.mark.e2e),
    ((16,), "tanh")])
def test_any_hidden_widths_and_activation_learn_round_trip_and_differentiate(
        hidden, activation, tmp_path):
    """LightNAS' 128-64-1 and LA-DARTS' 112-256-64-1 with sigmoids are expressible: the
    analytic gradients train them (the loss falls far below guessing the mean), the file
    keeps the shape, and the differentiable cost agrees with `predict`."""
    space = get_space("tiny")
    archs, ms = synthetic(space, 120, seed=5)
    model = predictor.fit(space, archs[:100], ms[:100], hidden=hidden, activation=activation,
                          steps=1500)
    assert model.hidden == hidden and model.activation == activation
    mape = predictor.errors(model.predict(archs[100:]), ms[100:])["mape"]
    constant = predictor.errors([np.mean(ms[:100])] * 20, ms[100:])["mape"]
    assert mape < constant / 3, (mape, constant)
    model.save(tmp_path / "p.json")
    again = predictor.LatencyPredictor.load(tmp_path / "p.json")
    assert again.hidden == hidden and again.activation == activation
    np.testing.assert_allclose(again.predict(archs), model.predict(archs))
    assert float(again.soft_cost(archs[0].one_hot())) == pytest.approx(model.of(archs[0]),
                                                                       rel=1e-5)


def test_numeric_gradient_matches_for_sigmoid_layers():
    space = get_space("tiny")
    archs, ms = synthetic(space, 20, seed=6)
    x = np.stack([a.one_hot().reshape(-1) for a in archs])
    y = (np.asarray(ms) - np.mean(ms)) / np.std(ms)
    model = predictor.fit(space, archs, ms, hidden=(8, 4), activation="sigmoid", steps=5)
    weights = [w.copy() for w in model.weights]
    zero = np.zeros_like(weights[0])
    grads = predictor._gradients(weights, x, y, 0.0, zero, 0.0, "sigmoid")
    for layer in (2, 4, 6):
        bumped = [w.copy() for w in weights]
        bumped[layer][0, 0] += 1e-6
        loss = [np.mean((predictor._forward(w, x, "sigmoid")[0] - y) ** 2)
                for w in (weights, bumped)]
        assert (loss[1] - loss[0]) / 1e-6 == pytest.approx(grads[layer][0, 0], rel=1e-3)


def test_bad_predictor_shapes_are_one_line():
    space = get_space("tiny")
    archs, ms = synthetic(space, 10, seed=7)
    with pytest.raises(TfnasError, match="unknown predictor activation 'gelu'"):
        predictor.fit(space, archs, ms, activation="gelu")
    with pytest.raises(TfnasError, match="widths must be positive"):
        predictor.fit(space, archs, ms, hidden=(8, 0))
