"""Multi-path mixed ops: probabilities, one path per layer for hard Gumbel, proxyless gradients
that touch only sampled paths, E[R] of a one-hot p, and save/load."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import tensorflow as tf

from conftest import small_space
from tfnas.search import supernet
from tfnas.costs import CostModel
from tfnas.latency.table import LatencyTable
from tfnas.search.layers import mixed
from tfnas.space import get_space

SPACE = get_space("tiny")
IMAGES = tf.random.stateless_normal((4, 16, 16, 3), seed=(1, 2))


def _net(method, select=None):
    net = supernet.build(SPACE, method=method, seed=0, select=select)
    net(IMAGES[:1])
    return net


def _favour(net, op_index):
    """α that makes candidate `op_index` of every layer (or its last one) all but certain.

    A margin of 20 leaves another candidate a chance of about e^-20 per layer to win the hard
    Gumbel draw. A margin of 100 pushed the smallest layer's α gradient down to about 1e-18
    (1e-11 with 20, over 20 draws), where a Gumbel draw could make it exactly 0: the
    one-path test then failed in one full-suite run of several."""
    for layer in supernet.searchable_layers(net):
        alpha = np.zeros(len(layer.candidates), np.float32)
        alpha[min(op_index, len(alpha) - 1)] = 20.0
        layer.alpha.assign(alpha)


@pytest.fixture
def path_counter(monkeypatch):
    """A variable counting path executions (branches not taken do not run)."""
    count = tf.Variable(0, dtype=tf.int64)
    original = mixed.OpPath.call

    def counted(self, inputs, training=None):
        count.assign_add(1)
        return original(self, inputs, training=training)

    monkeypatch.setattr(mixed.OpPath, "call", counted)
    return count


@pytest.mark.parametrize("method", ["softmax", "gumbel", "gumbel_soft", "proxyless"])
def test_probabilities_sum_to_one(method):
    net = _net(method)
    for layer in supernet.searchable_layers(net):
        layer.alpha.assign(np.random.default_rng(0).normal(0, 3, len(layer.candidates)))
    rows = supernet.soft_one_hot(net, SPACE).numpy()
    assert rows.shape == (SPACE.num_layers, len(SPACE.ops))
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.e2e
def test_hard_gumbel_runs_one_path_per_layer_yet_alpha_learns(path_counter):
    net = _net("gumbel", "switch")  # (gathered paths run no OpPath: counted below)
    _favour(net, 0)  # an MBConv in every layer, so each layer runs exactly one path
    alphas = supernet.architecture_variables(net)

    @tf.function
    def step(images, training=True):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(images, training=training)))
        return tape.gradient(loss, alphas)

    path_counter.assign(0)
    step(IMAGES)
    assert int(path_counter.numpy()) == SPACE.num_layers
    # at α = 0 every layer's draw is open (a skip runs no path): no more than one path per
    # layer runs and each layer's α still gets the loss's gradient. (At the margin above,
    # 1 - p of the winner rounds to 0 in float32 and a rare draw leaves a layer no gradient.)
    for layer in supernet.searchable_layers(net):
        layer.alpha.assign(np.zeros(len(layer.candidates), np.float32))
    path_counter.assign(0)
    step(IMAGES)
    assert int(path_counter.numpy()) <= SPACE.num_layers
    # the gradient is checked with batch norm on moving statistics: in training mode the next
    # layer's batch norm cancels the gate's scale, and the skippable layers' α gradient is
    # 1e-10 to 4e-9 (exactly 0 in one CI run), as for the skip gate below
    grads = step(IMAGES, training=False)
    assert all(np.count_nonzero(g.numpy()) >= 1 for g in grads)
    # the softmax mixed op runs every MBConv path of every layer
    soft = _net("softmax")
    path_counter.assign(0)
    tf.function(lambda x: soft(x, training=True))(IMAGES)
    paths = sum(len(layer.paths) for layer in supernet.searchable_layers(soft))
    assert int(path_counter.numpy()) == paths > SPACE.num_layers


def test_a_hard_gate_on_skip_still_gives_alpha_the_losss_gradient():
    """With skip chosen, α must still learn from the loss (not only from the cost): the gate
    weighs the whole candidate output, residual included.

    Batch norm runs on its moving statistics here. In training mode the next layer's batch
    norm undoes any scale of its input, so ⟨dL/dy, y⟩ (the gate's gradient) is about 1e-9
    and a Gumbel draw can round it to exactly 0 (one CI run failed so): the gate is still in
    place, the chain's batch norm hides it. The margin is small so that dp/dα is not."""
    net = _net("gumbel")
    for layer in supernet.searchable_layers(net):
        alpha = np.zeros(len(layer.candidates), np.float32)
        alpha[-1] = 2.0  # skip where a layer has it (last candidate), else its last MBConv
        layer.alpha.assign(alpha)
    layers = supernet.searchable_layers(net)
    skipping = [i for i, layer in enumerate(layers) if layer.decisions().is_skip]
    assert skipping  # the tiny space offers skip in some layers
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(net(IMAGES, training=False)))
    grads = tape.gradient(loss, supernet.architecture_variables(net))
    for i in skipping:
        assert np.abs(grads[i].numpy()).max() > 1e-6 * float(loss), \
            f"layer {i}: skip gate has no gradient"


def test_proxyless_changes_only_the_alpha_of_sampled_paths(path_counter):
    import keras

    net = _net("proxyless", "switch")
    layers = supernet.searchable_layers(net)
    alphas = supernet.architecture_variables(net)
    optimizer = keras.optimizers.Adam(0.1, beta_1=0.0)  # as the search sets it for proxyless
    for _ in range(3):
        before = [a.numpy().copy() for a in alphas]
        with mixed.arch_phase(layers), tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(IMAGES, training=True)))
        grads = tape.gradient(loss, alphas)
        optimizer.apply(grads, alphas)
        for layer, g, old, a in zip(layers, grads, before, alphas):
            sampled = np.flatnonzero(g.numpy())
            assert len(sampled) == min(2, len(layer.candidates))
            untouched = np.setdiff1d(np.arange(len(old)), sampled)
            np.testing.assert_array_equal(a.numpy()[untouched], old[untouched])
    # a weight step runs only the opened path of each layer
    path_counter.assign(0)
    net(IMAGES, training=True)
    assert int(path_counter.numpy()) <= SPACE.num_layers


def _depthwise_convolutions(model, arch_step=False):
    """Depthwise convolutions (forward and backward) in a traced training step of `model`,
    nested functions (a conditional's branches) included."""
    layers = supernet.searchable_layers(model)

    @tf.function
    def step(images):
        with (mixed.arch_phase(layers) if arch_step else contextlib.nullcontext()), \
                tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(images, training=True)))
        return tape.gradient(loss, model.trainable_variables)

    graph = step.get_concrete_function(IMAGES).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return sum(n.op.startswith("DepthwiseConv2dNative") for n in nodes)


@pytest.mark.parametrize("method", ["gumbel", "proxyless"])
def test_a_gathered_step_holds_one_network_not_every_path(method):
    """By default hard Gumbel's and proxyless' steps hold the largest child network's
    depthwise convolutions, forward and backward: one MBConv per layer, not a branch per
    candidate (the switch: several times more). A proxyless architecture step runs the closed
    path forward only: one more forward convolution per layer, no more backward ones."""
    from tfnas import nets
    from tfnas.space import Architecture

    child = nets.build(Architecture.uniform(SPACE, SPACE.largest_op))
    gathered, switched = _net(method), _net(method, "switch")
    expected = _depthwise_convolutions(child)
    assert expected >= 3 * SPACE.num_layers  # forward, input and filter gradients
    assert _depthwise_convolutions(gathered) == expected
    assert _depthwise_convolutions(switched) >= 2 * expected
    if method == "proxyless":
        assert _depthwise_convolutions(gathered, True) == expected + SPACE.num_layers


@pytest.mark.parametrize("method", ["softmax", "gumbel", "proxyless"])
def test_expected_latency_of_a_one_hot_p_is_the_table_latency_of_the_argmax(method):
    table = LatencyTable.from_flops(SPACE)
    cost_model = CostModel.from_table(SPACE, table, "table")
    net = _net(method)
    rng = np.random.default_rng(1)
    for layer in supernet.searchable_layers(net):
        alpha = np.zeros(len(layer.candidates), np.float32)
        alpha[rng.integers(len(alpha))] = 100.0
        layer.alpha.assign(alpha)
    arch = supernet.derive(net, SPACE)
    expected = float(supernet.expected_cost(net, cost_model))
    assert expected == pytest.approx(cost_model.of(arch), rel=1e-5)
    assert expected == pytest.approx(table.cost(arch), rel=1e-5)


def test_mixed_op_round_trips_through_save_and_load(tmp_path):
    import keras

    net = _net("gumbel")
    _favour(net, 1)
    path = tmp_path / "net.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(IMAGES), net(IMAGES), atol=1e-5)
    assert supernet.derive(loaded, SPACE) == supernet.derive(net, SPACE)


def test_a_path_computes_the_derived_networks_layer_with_or_without_se():
    """A mixed op's path and the derived network's layer come from one builder: with the same
    weights they compute the same output (plus the shortcut the mixed op adds)."""
    import keras

    from tfnas import nets

    space = get_space("tiny", squeeze_excite=(False, True))
    x = tf.random.stateless_normal((2, 8, 8, 16), seed=(3, 4))
    for name in ("mbconv_k5_e6_se", "mbconv_k3_e3"):
        sig = space.signature(1, name)  # 8x8x16 -> 16 at stride 1: a shortcut
        layer = mixed.MixedOp(sig.c_out, sig.stride, [name, "skip"])
        layer.build(x.shape)
        path = layer.paths[0]
        inputs = keras.Input(x.shape[1:])
        standalone = keras.Model(inputs, nets.block(inputs, keras, sig, "c"))
        assert sum(int(np.prod(w.shape)) for w in path.weights) == sig.params()
        for target, source in zip(standalone.weights, path.weights):
            target.assign(source)
        np.testing.assert_allclose(standalone(x), path(x) + x, atol=1e-5)


def test_an_se_space_searches_with_mixed_ops():
    """α of every candidate, SE or not, gets the loss's gradient (save/load of the paths is
    `test_mixed_op_round_trips_through_save_and_load`'s: one OpPath class for every op)."""
    space = get_space("tiny", squeeze_excite=(False, True))
    net = supernet.build(space, method="softmax", seed=0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(net(IMAGES, training=True)))
    grads = tape.gradient(loss, [layer.alpha for layer in supernet.searchable_layers(net)])
    assert all(bool(tf.reduce_all(g != 0)) for g in grads)
    assert supernet.derive(net, space).space == space


def test_the_superkernel_refuses_an_se_space_in_one_line():
    from tfnas.search import methods
    from tfnas.errors import TfnasError

    space = get_space("tiny", squeeze_excite=(False, True))
    with pytest.raises(TfnasError, match="needs a multi-path method"):
        supernet.build(space, method="superkernel")
    methods.get("proxyless").check_space(space)


# kernels 3-7, an e=1 candidate (no expand unit) and searched SE: every case of gathering
WIDE_SPACE = get_space("tiny", kernels=(3, 5, 7), expansions=(1, 3, 6),
                       squeeze_excite=(False, True))


UNITS = ("expand", "expand_bn", "dw", "dw_bn", "se_reduce", "se_expand", "project",
         "project_bn")


def _path_variables(path) -> dict:
    """An OpPath's variables by the gathered layer's names (`expand_kernel`, `dw_bn_gamma`)."""
    found = {}
    for unit in UNITS:
        try:
            layer = path.net.get_layer(f"path_{unit}")
        except ValueError:
            continue
        for attr in ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance"):
            if getattr(layer, attr, None) is not None:
                found[f"{unit}_{attr}"] = getattr(layer, attr)
    return found


def _candidates(net, values=None) -> list:
    """Per mixed op and candidate, its tensors by name: from separate paths, or cut out of a
    gathered layer's stacked weights (or of `values`: per stacked variable's id, e.g. its
    gradient; zeros for a variable it lacks). Separate paths' `values` are taken the same way."""
    out = []
    for layer in supernet.searchable_layers(net):
        for j, op in enumerate(layer.candidates):
            if op.is_skip:
                continue
            if layer.gathered is not None:
                g = layer.gathered
                source = None if values is None else {
                    name: values.get(id(g._weights[name]), np.zeros(g._weights[name].shape))
                    for name in g.weight_names}
                out.append(g.candidate_weights(j, source))
            else:
                found = _path_variables(layer.paths[layer._path_of[j]])
                out.append({k: np.asarray(v if values is None else
                                          values.get(id(v), np.zeros(v.shape)))
                            for k, v in found.items()})
    return out


def _copy_into(target, source) -> None:
    """`source`'s weights (a network of separate paths) into `target` (same space; gathered
    mixed ops get each candidate's tensors in its rows)."""
    for t, s in zip(target.layers, source.layers):
        if isinstance(t, mixed.MixedOp):
            t.alpha.assign(s.alpha)
            t.temperature.assign(s.temperature)
            for j, op in enumerate(t.candidates):
                if op.is_skip:
                    continue
                values = {k: np.asarray(v)
                          for k, v in _path_variables(s.paths[s._path_of[j]]).items()}
                if t.gathered is not None:
                    t.gathered.set_candidate_weights(j, values)
                else:
                    for k, v in _path_variables(t.paths[t._path_of[j]]).items():
                        v.assign(values[k])
        else:
            t.set_weights(s.get_weights())


@pytest.mark.parametrize("method", ["gumbel", "proxyless"])
@pytest.mark.parametrize("select", ["mask", "gather"])
def test_one_path_selections_give_the_switchs_values_and_gradients(method, select):
    """`select="gather"` (the candidates' weights stacked and zero-padded per role, the chosen
    row run as one MBConv of the layer's largest shape) and `select="mask"` (every path
    computed, one kept) must equal the one-path switch: same output, same α and path-weight
    gradients, same moving statistics (gather), same evaluation output, for the same noise;
    with random weights, so that padded batch-norm offsets and SE biases would show. A weight
    step and an architecture step (proxyless: the closed path's output without a backward
    pass)."""
    space = WIDE_SPACE if select == "gather" else SPACE
    nets = []
    for chosen in ("switch", select):
        net = supernet.build(space, method=method, seed=0, select=chosen, dropout=0.0)
        net(IMAGES[:1])
        nets.append(net)
    rng = np.random.default_rng(5)
    nets[0].set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype)
                         if w.dtype == np.float32 else w for w in nets[0].get_weights()])
    start = [np.asarray(v).copy() for v in nets[0].weights]
    for phase in (False, True):
        for v, value in zip(nets[0].weights, start):
            v.assign(value)
        _copy_into(nets[1], nets[0])
        initial = _candidates(nets[0])
        results = []
        for net in nets:
            layers = supernet.searchable_layers(net)
            for layer in layers:
                layer.seed_generator.state.assign([7, 0])  # the same draws in both
                layer.alpha.assign(np.arange(len(layer.candidates)) % 3)
            alphas = supernet.architecture_variables(net)
            others = [v for v in net.trainable_variables
                      if all(v is not a for a in alphas)]
            with (mixed.arch_phase(layers) if phase else contextlib.nullcontext()), \
                    tf.GradientTape() as tape:
                out = net(IMAGES, training=True)
                loss = tf.reduce_mean(tf.square(out))
            grads = tape.gradient(loss, alphas + others)
            dense = {id(v): (np.zeros(v.shape) if g is None else tf.convert_to_tensor(g).numpy())
                     for v, g in zip(alphas + others, grads)}
            results.append((out.numpy(), [dense[id(a)] for a in alphas],
                            _candidates(net, dense), _candidates(net),
                            net(IMAGES, training=False).numpy()))
        (out_s, alpha_s, grads_s, stats_s, eval_s), (out_x, alpha_x, grads_x, stats_x, eval_x) \
            = results
        np.testing.assert_allclose(out_x, out_s, rtol=1e-5, atol=1e-6 * np.abs(out_s).max())
        if phase or method == "gumbel":  # (a proxyless weight step gives α no gradient)
            assert any(np.abs(g).max() > 0 for g in alpha_s)
        for g_s, g_x in zip(alpha_s, alpha_x):
            np.testing.assert_allclose(g_x, g_s, rtol=1e-4, atol=1e-6)
        assert any(np.abs(g).max() > 0 for c in grads_s for g in c.values())
        for c_s, c_x in zip(grads_s, grads_x):
            assert c_s.keys() == c_x.keys()
            for name in c_s:
                if "moving" not in name:
                    np.testing.assert_allclose(c_x[name], c_s[name], rtol=1e-4, atol=1e-6,
                                               err_msg=name)
        if select == "gather":  # (the mask moves every path's statistics)
            moved = [n for c_s, c_0 in zip(stats_s, initial) for n in c_s
                     if "moving" in n and np.any(c_s[n] != c_0[n])]
            assert moved
            for c_s, c_x in zip(stats_s, stats_x):
                for name in c_s:
                    np.testing.assert_allclose(c_x[name], c_s[name], rtol=1e-5, atol=1e-6,
                                               err_msg=name)
            np.testing.assert_allclose(eval_x, eval_s, rtol=1e-5,
                                       atol=1e-6 * np.abs(eval_s).max())


def _proxyless_layer(probabilities):
    """A proxyless mixed op on a tiny input whose α give `probabilities`."""
    layer = mixed.MixedOp(8, 1, ["mbconv_k3_e1", "mbconv_k5_e1", "mbconv_k3_e2", "skip"],
                          mode="proxyless", seed=3, name="proxyless")
    x = tf.random.stateless_normal((1, 4, 4, 8), seed=(5, 6))
    layer(x)
    layer.alpha.assign(np.log(np.asarray(probabilities, np.float32)))
    return layer, x


def test_a_proxyless_weight_step_opens_each_path_with_its_probability():
    """ProxylessNAS Eq. 2: a weight step opens ONE path, drawn with probability p_j (drawing
    two and opening one of them opened (.546, .257, .137, .060) for these p)."""
    p = np.array([0.467, 0.257, 0.172, 0.104])
    layer, x = _proxyless_layer(p)

    @tf.function
    def opened(n):
        counts = tf.zeros(len(p), tf.int32)
        for _ in tf.range(n):
            layer(x, training=True)
            counts += tf.one_hot(layer.sampled, len(p), dtype=tf.int32)
        return counts

    frequency = opened(tf.constant(20_000)).numpy() / 20_000
    np.testing.assert_allclose(frequency, p, atol=0.01)


@pytest.mark.e2e
def test_a_proxyless_architecture_step_keeps_the_unsampled_paths_probabilities(tmp_path):
    """Sec. 3.2.1: after the α step on two sampled paths, the search rescales them so the
    other paths' probabilities are unchanged; the pair's share moves."""
    from tfnas.costs import CostModel
    from tfnas.search.objectives import Objective
    from tfnas.search import Search, SearchConfig

    space = small_space()
    search = Search(SearchConfig(
        space=space, dataset="digits", method="proxyless", cost_model=CostModel.flops(space),
        objective=Objective("log", 0.3), model_dir=str(tmp_path / "run"), epochs=2,
        batch_size=32, seed=0, arch_learning_rate=0.5, verbose=False))
    search.lam.assign(0.3)
    search.arch_on.assign(1.0)
    layers = supernet.searchable_layers(search.model)
    rng = np.random.default_rng(0)
    for layer in layers:
        layer.alpha.assign(rng.normal(0, 1, len(layer.candidates)).astype(np.float32))
    images, labels = next(iter(search.data.train(0)))
    moved = 0
    for _ in range(3):
        before = [tf.nn.softmax(layer.alpha).numpy() for layer in layers]
        search.train_step(images, labels)
        for layer, old in zip(layers, before):
            new = tf.nn.softmax(layer.alpha).numpy()
            pair = layer.pair.numpy()
            assert len(set(pair)) == 2
            others = np.setdiff1d(np.arange(len(old)), pair)
            np.testing.assert_allclose(new[others], old[others], atol=1e-6)
            np.testing.assert_allclose(new[pair].sum(), old[pair].sum(), atol=1e-6)
            moved += np.abs(new[pair] - old[pair]).max() > 1e-4
    assert moved >= len(layers)  # the pairs' probabilities did move


@pytest.mark.e2e
def test_reinforce_alpha_steps_follow_the_reward(tmp_path):
    """ProxylessNAS Eq. 8: with the reward dominated by a steep cost term (λ = 20, log R),
    REINFORCE's α steps shift probability to cheap paths, using only the sampled networks'
    rewards: the expected cost falls and the baseline tracks the rewards."""
    from tfnas.costs import CostModel
    from tfnas.search.objectives import Objective
    from tfnas.search import Search, SearchConfig

    space = small_space()
    cost_model = CostModel.flops(space)
    search = Search(SearchConfig(
        space=space, dataset="digits", method="proxyless_reinforce", cost_model=cost_model,
        objective=Objective("log", 20.0), model_dir=str(tmp_path / "run"), epochs=2,
        batch_size=32, seed=0, arch_learning_rate=0.1, rl_samples=4, verbose=False))
    search.lam.assign(20.0)
    search.arch_on.assign(1.0)
    before = float(supernet.expected_cost(search.model, cost_model))
    batches = iter(search.data.train(0))
    for _ in range(6):
        images, labels = next(batches)
        search.train_step(images, labels)
    after = float(supernet.expected_cost(search.model, cost_model))
    assert after < 0.95 * before, (before, after)
    assert float(search.baseline_set) == 1.0 and float(search.baseline) != 0.0


@pytest.mark.slow
def test_reinforce_search_with_a_larger_lambda_derives_a_faster_network(tmp_path):
    """The REINFORCE method searches tiny on digits; λ = 1 gives a lower predicted latency
    than λ = 0.02 (by hand, 4 epochs, 10 samples: 0.448 and 0.373 ms on a FLOPs table)."""
    import json
    import subprocess
    import sys

    from conftest import ROOT, TINY_SEARCH
    from tfnas.latency.table import LatencyTable as Table

    Table.from_flops(SPACE, ms_per_mflop=1.0).save(tmp_path / "lut.json")
    predicted = {}
    for lam in ("0.02", "1.0"):
        run = tmp_path / f"lam{lam}"
        out = subprocess.run([sys.executable, "-m", "tfnas.search", *TINY_SEARCH,
                              "--method=proxyless_reinforce", "--warmup_epochs=1",
                              "--epochs=4", "--cost=log", f"--lam={lam}",
                              f"--latency_table={tmp_path / 'lut.json'}", f"--model_dir={run}"],
                             capture_output=True, text=True, timeout=1200, cwd=ROOT)
        assert out.returncode == 0, out.stderr[-2000:]
        predicted[lam] = json.loads((run / "report.json").read_text())["predicted_ms"]
    assert predicted["1.0"] < predicted["0.02"], predicted
