"""Single-Path superkernel: gradients reach thresholds, decisions flip, outputs match children,
costs equal table rows."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfnas import nets
from tfnas.search import supernet
from tfnas.costs import CostModel
from tfnas.latency.table import LatencyTable
from tfnas.search.layers.superkernel import SuperkernelMBConv
from tfnas.space import SKIP, Architecture, LayerSignature, Op, get_space


def _layer(c_in=8, c_out=8, stride=1, allow_skip=True, kernels=(3, 5), expansions=(3, 6)):
    layer = SuperkernelMBConv(c_out, stride, kernels=kernels, expansions=expansions,
                              allow_skip=allow_skip, seed=0)
    layer.build((None, 10, 10, c_in))
    return layer


def _set_decision(layer: SuperkernelMBConv, op: Op) -> None:
    """Thresholds far below (on) or far above (off) every group norm, to select `op`.

    Norms are mean squares (>= 0): -1 is always below, 1e3 always above."""
    k_on = [k <= op.kernel for k in layer.kernels[1:]]
    layer.kernel_thresholds.assign(np.where(k_on, -1.0, 1e3).astype(np.float32))
    e_on = [(not op.is_skip) and e <= op.expansion for e in layer.expansions]
    if not layer.allow_skip:
        e_on = e_on[1:]
    layer.expansion_thresholds.assign(np.where(e_on, -1.0, 1e3).astype(np.float32))


def test_loss_gradient_reaches_every_threshold():
    space = get_space("tiny")
    model = supernet.build(space, seed=1)
    costs = CostModel.from_table(space, LatencyTable.from_flops(space))
    images = tf.random.stateless_uniform((8, 16, 16, 3), (1, 2), -1, 1)
    labels = tf.constant(np.arange(8) % 10)
    thresholds = supernet.architecture_variables(model)
    with tf.GradientTape() as tape:
        logits = model(images, training=True)
        ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        loss = tf.reduce_mean(ce) + 0.1 * tf.math.log(supernet.expected_cost(model, costs))
    grads = tape.gradient(loss, thresholds)
    skippable = sum(SKIP in space.candidates(i) for i in range(space.num_layers))
    # per layer: one kernel ring (3→5), one channel group (3→6), plus e3 (skip) where allowed
    assert sum(v.shape[0] for v in thresholds) == 2 * space.num_layers + skippable
    for var, grad in zip(thresholds, grads):
        assert grad is not None, var.path
        assert np.all(np.asarray(grad) != 0), (var.path, np.asarray(grad))


def test_a_skipped_layer_gets_the_straight_through_gradient_of_its_e3_branch():
    """A skipped layer must be able to come back from CE: t_e3's gradient is the
    straight-through estimate on the e=3 branch, −σ'(n − t)·⟨∂CE/∂y, MBConv_e3(x)⟩, nonzero
    at initialisation (masking the branch before the projection gave ⟨∂CE/∂y, β⟩ = 0)."""
    keras.utils.set_random_seed(0)  # the layer's initial weights
    layer = _layer(16, 16)
    head = keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(seed=1))
    x = tf.random.stateless_normal((6, 10, 10, 16), (3, 4))
    labels = tf.constant([0, 1, 2, 3, 4, 5])

    def ce(y):
        logits = head(tf.reduce_mean(y, axis=(1, 2)))
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))

    _set_decision(layer, Op(3, 3))
    branch = layer(x, training=True) - x  # the e=3 MBConv's output, before any training
    _, group_norms = layer.norms()
    t_skip = group_norms[0] + 0.5  # just above the norm: skipped, in the sigmoid's range
    layer.expansion_thresholds.assign([t_skip, 1e3])
    assert layer.decisions().is_skip
    with tf.GradientTape() as tape:
        loss = ce(layer(x, training=True))
    grad = float(tape.gradient(loss, layer.expansion_thresholds)[0])
    gate = tf.Variable(0.0)  # the branch's gate at its skipped value, 0
    with tf.GradientTape() as tape:
        loss = ce(x + gate * branch)
    sigmoid = 1.0 / (1.0 + np.exp(-(group_norms[0] - t_skip)))
    straight_through = -sigmoid * (1 - sigmoid) * float(tape.gradient(loss, gate))
    assert abs(straight_through) > 1e-4  # (5.7e-4 with this seed)
    assert grad == pytest.approx(straight_through, rel=1e-3)


@pytest.mark.parametrize("op", [Op(3, 3), Op(3, 6), Op(5, 3), Op(5, 6), SKIP])
def test_threshold_flips_exactly_one_decision_and_output_equals_the_child(op):
    layer = _layer()
    _set_decision(layer, op)
    assert layer.decisions() == op
    # moving one threshold to just above / below its norm flips exactly that decision
    ring_norms, group_norms = layer.norms()
    old = layer.kernel_thresholds.numpy()
    layer.kernel_thresholds.assign(ring_norms * (1.001 if op.kernel == 5 else 0.999))
    expected = op if op.is_skip else Op(3 if op.kernel == 5 else 5, op.expansion)
    assert layer.decisions() == expected
    layer.kernel_thresholds.assign(old)
    if not op.is_skip:  # the e6 group: thresholds are (e3, e6) in a skippable layer
        old = layer.expansion_thresholds.numpy()
        flipped = old.copy()
        flipped[1] = group_norms[1] * (1.001 if op.expansion == 6 else 0.999)
        layer.expansion_thresholds.assign(flipped)
        assert layer.decisions() == Op(op.kernel, 3 if op.expansion == 6 else 6)
        layer.expansion_thresholds.assign(old)
    assert layer.decisions() == op

    x = np.random.default_rng(0).normal(size=(4, 10, 10, 8)).astype(np.float32)
    for training in (False, True):
        got = np.asarray(layer(x, training=training))
        sig = LayerSignature(10, 10, 8, 8, 1, op)
        inputs = keras.Input((10, 10, 8))
        child = keras.Model(inputs, nets.block(inputs, keras, sig, "c"))
        for suffix, weights in layer.child_weights(op).items():
            child.get_layer(f"c_{suffix}").set_weights(weights)
        want = np.asarray(child(x, training=training))
        assert np.abs(got - want).max() < 1e-5, (training, np.abs(got - want).max())


def test_stride_two_layer_without_skip_matches_its_child():
    layer = _layer(c_in=8, c_out=16, stride=2, allow_skip=False, kernels=(3, 5, 7))
    assert layer.expansion_thresholds.shape == (1,)
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 8)).astype(np.float32)
    for op in (Op(3, 3), Op(5, 6), Op(7, 3), Op(7, 6)):
        _set_decision(layer, op)
        assert layer.decisions() == op
        sig = LayerSignature(10, 10, 8, 16, 2, op)
        inputs = keras.Input((10, 10, 8))
        child = keras.Model(inputs, nets.block(inputs, keras, sig, "c"))
        for suffix, weights in layer.child_weights(op).items():
            child.get_layer(f"c_{suffix}").set_weights(weights)
        assert np.abs(np.asarray(layer(x)) - np.asarray(child(x))).max() < 1e-5


def test_expected_cost_is_the_table_row_of_the_decision():
    layer = _layer()
    costs = {Op(3, 3): 1.0, Op(3, 6): 2.0, Op(5, 3): 3.0, Op(5, 6): 5.0, SKIP: 0.25}
    for op, value in costs.items():
        _set_decision(layer, op)
        assert float(layer.expected_cost(costs)) == pytest.approx(value, abs=1e-6)


def test_supernet_cost_equals_derived_architecture_cost_with_pixel1():
    space = get_space("single_path")
    model = supernet.build(space, seed=3)
    costs = CostModel.from_table(space, LatencyTable.load("pixel1"))
    assert float(supernet.expected_cost(model, costs)) == pytest.approx(131.4578, abs=1e-3)
    rng = np.random.default_rng(5)
    for layer in supernet.searchable_layers(model):  # random thresholds around the norms
        ring_norms, group_norms = layer.norms()
        layer.kernel_thresholds.assign(ring_norms * rng.uniform(0.5, 1.5, ring_norms.shape))
        layer.expansion_thresholds.assign(group_norms * rng.uniform(0.5, 1.5, group_norms.shape))
    arch = supernet.derive(model, space)
    assert len(set(arch.ops)) > 1
    assert float(supernet.expected_cost(model, costs)) == pytest.approx(costs.of(arch), rel=1e-6)
    assert LatencyTable.load("pixel1").cost(arch) == pytest.approx(costs.of(arch), rel=1e-9)


def test_pixel1_prices_the_authors_space_as_their_runtime_model_does():
    """Their code: layers 0 and 21 fixed and inside the 19.5999 ms constant, rows 1-20 for the
    searchable layers, 0 ms for a skipped layer (Eq. 11-12)."""
    space, table = get_space("single_path"), LatencyTable.load("pixel1")
    assert space.num_layers == 20
    assert space.first_layer == LayerSignature(112, 112, 32, 16, 1, Op(3, 1))
    assert space.last_layer == LayerSignature(7, 7, 192, 320, 1, Op(3, 6))
    small = Architecture.uniform(space, "mbconv_k3_e3")
    big = Architecture.uniform(space, "mbconv_k5_e6")
    assert table.cost(small) == pytest.approx(65.6914, abs=1e-3)
    assert table.cost(big) == pytest.approx(131.4578, abs=1e-3)
    assert table.fixed_ms == pytest.approx(19.5999)
    for i in range(space.num_layers):
        if SKIP in space.candidates(i):
            ops = list(small.ops)
            ops[i] = SKIP
            skipped = Architecture(space, tuple(ops))
            assert table.cost(skipped) == pytest.approx(
                table.cost(small) - table.rows[space.signature(i, Op(3, 3))], abs=1e-9)


def test_layer_config_round_trips_through_save_and_load(tmp_path):
    space = get_space("tiny")
    model = supernet.build(space, seed=2, drop_rate=0.1)
    path = tmp_path / "supernet.keras"
    model.save(path)
    again = keras.models.load_model(path)
    layers = supernet.searchable_layers(again)
    assert [layer.get_config() for layer in layers] == [
        layer.get_config() for layer in supernet.searchable_layers(model)]
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    assert np.allclose(model(x), again(x), atol=1e-6)
    assert supernet.derive(again, space) == supernet.derive(model, space)


@pytest.mark.e2e
def test_a_layer_that_starts_skipped_comes_back_when_the_data_need_it(tmp_path):
    """Digits through a stem of 8 channels at stride 2, one 1x1 head conv and pooling: without
    its two searchable layers the network reaches about 0.3-0.55 validation accuracy. Both
    start skipped (t_e3 0.05 above its norm) and the search has no cost term: CE alone must
    bring a layer back (before the skip gate moved to the output, neither moved: t_e3 stayed
    exactly 0.05 above the norm)."""
    from tfnas.search import Search, SearchConfig
    from tfnas.space import SearchSpace, Stage

    space = SearchSpace(name="probe", input_size=16, num_classes=10, stem_filters=8,
                        stem_stride=2, first_filters=0, stages=(Stage(8, 2, 1),),
                        head_filters=32)
    search = Search(SearchConfig(space=space, dataset="digits", objective=None,
                                 cost_model=CostModel.flops(space), epochs=3, batch_size=32,
                                 model_dir=str(tmp_path / "run"), seed=0, verbose=False))
    layers = supernet.searchable_layers(search.model)
    for layer in layers:
        _, group_norms = layer.norms()
        layer.expansion_thresholds.assign([group_norms[0] + 0.05, 0.0])
    assert all(op.is_skip for op in supernet.derive(search.model, space).ops)
    search.run()
    assert not supernet.derive(search.model, space).ops[0].is_skip
    last = (tmp_path / "run" / "search_log.csv").read_text().splitlines()[-1].split(",")
    assert float(last[3]) > 0.8  # validation accuracy of the derived network
