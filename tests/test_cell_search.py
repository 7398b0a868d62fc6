"""The DARTS search network: mixed edges over the eight ops (DARTS), partial channels and edge
normalisation (PC-DARTS), the derived genotype, DCA-NAS' soft cost."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfnas.search.cell_supernet import CellSupernet, derive_cell, derived_one_hot
from tfnas.costs import CellCost
from tfnas.search.layers.cell import channel_shuffle
from tfnas.space.cells import (CELL_OPS, EdgeSignature, Genotype, edge_count, edge_sources,
                               get_network)

NETWORK = get_network("darts28_search", cells=3, init_channels=8, input_size=16)


def _images(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(-1, 1, (n, 16, 16, 1)).astype("float32"),
            rng.integers(0, 10, n).astype("int32"))


# two nodes (5 edges per cell, 120 ops in 3 cells): building and first calling 4 nodes' 14
# edges x 8 ops per cell takes 50 s here; what is checked does not need them
@pytest.fixture(scope="module")
def darts_net():
    return CellSupernet(NETWORK, nodes=2)


@pytest.fixture(scope="module")
def pc_darts_net():
    return CellSupernet(NETWORK, nodes=2, partial=4, edge_normalization=True)


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["darts", "pc_darts"])
def test_the_loss_gradient_reaches_every_alpha_and_beta(method, request):
    net = request.getfixturevalue(f"{method}_net")
    edge_normalization = method == "pc_darts"
    images, labels = _images()
    with tf.GradientTape() as tape:
        logits = net(images, training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    assert tuple(logits.shape) == (4, 10)
    grads = tape.gradient(loss, net.architecture_variables)
    assert len(grads) == (4 if edge_normalization else 2)
    for g in grads:
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0
    # 14 edges of 8 ops per kind of cell with 4 nodes (DARTS), 5 with 2
    assert tuple(net.alphas["normal"].shape) == (edge_count(net.nodes), len(CELL_OPS))
    assert edge_count(4) == 14


def test_channel_shuffle_interleaves_the_groups():
    x = tf.reshape(tf.range(8, dtype=tf.float32), (1, 1, 1, 8))
    assert channel_shuffle(x, 4).numpy().ravel().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_derive_keeps_the_two_strongest_edges_of_each_node_and_never_none():
    sources = edge_sources(4)
    weights = np.full((14, 8), 0.01)
    none, sep3, skip = (CELL_OPS.index(o) for o in ("none", "sep_conv_3x3", "skip_connect"))
    weights[:, none] = 0.9  # none is everywhere the largest weight: still never kept
    strong = {(3, 2): sep3, (3, 0): skip, (5, 4): sep3, (5, 1): sep3}
    for e, edge in enumerate(sources):
        if edge in strong:
            weights[e, strong[edge]] = 0.5
    cell = derive_cell(weights, None, 4)
    cell.check("normal")
    assert len(cell.edges) == 8 and all(op != "none" for op, _ in cell.edges)
    assert cell.edges[2:4] == (("skip_connect", 0), ("sep_conv_3x3", 2))
    assert cell.edges[6:8] == (("sep_conv_3x3", 1), ("sep_conv_3x3", 4))
    # PC-DARTS: the edge weights reorder the edges into a node
    weights[sources.index((3, 1)), CELL_OPS.index("avg_pool_3x3")] = 0.02
    beta = np.ones(14)
    beta[sources.index((3, 1))] = 100.0
    assert derive_cell(weights, beta, 4).edges[2:4] == (("skip_connect", 0),
                                                        ("avg_pool_3x3", 1))


@pytest.mark.e2e
def test_a_fresh_search_network_derives_a_valid_genotype(pc_darts_net):
    pc_darts_net(_images()[0])
    genotype = pc_darts_net.derive()
    assert isinstance(genotype, Genotype)
    assert Genotype.parse(genotype.to_text()) == genotype


@pytest.mark.e2e
def test_the_soft_params_move_with_alpha_by_the_ops_exact_params(darts_net):
    net = darts_net
    net(_images()[0])
    none, sep3 = CELL_OPS.index("none"), CELL_OPS.index("sep_conv_3x3")

    edges = edge_count(net.nodes)
    params = CellCost.counting("params", NETWORK, net.nodes)

    def cost_with(op):
        onehot = np.zeros((edges, 8), "float32")
        onehot[:, op] = 1.0
        for kind in ("normal", "reduce"):
            net.alphas[kind].assign(np.log(onehot + 1e-12))
        return float(net.expected_cost(params))

    gained = cost_with(sep3) - cost_with(none)
    # 3 cells of 8 channels at 16x16: one normal (C=8), two reduction cells (C=16, C=32)
    per_edge = {c: EdgeSignature("sep_conv_3x3", c, 1, 1).params() for c in (8, 16, 32)}
    assert gained == pytest.approx(edges * sum(per_edge.values()) / 1e6, rel=1e-5)
    net.alphas["normal"].assign(np.zeros((edges, 8), "float32"))
    with tf.GradientTape() as tape:
        cost = net.expected_cost(params)
    grad = tape.gradient(cost, net.alphas["normal"]).numpy()
    assert grad[0, sep3] > 0 > grad[0, none]  # weight moved to sep_conv costs params


def test_the_cell_layers_configs_round_trip():
    from tfnas.search.layers.cell import CellEdgeOp, SearchCell

    for layer in (CellEdgeOp("dil_conv_5x5", 8, 2, name="e"),
                  SearchCell(16, True, False, nodes=2, partial=4, name="c"),
                  SearchCell(16, True, False, nodes=2, partial=2, bottleneck=2, select="mask",
                             share=True, name="d")):
        again = type(layer).from_config(layer.get_config())
        assert again.get_config() == layer.get_config()
    config = CellSupernet(NETWORK, nodes=2, partial=2, bottleneck=2,
                          derived_cells=True).get_config()
    assert config["network"] == NETWORK.to_dict() and config["partial"] == 2
    assert config["bottleneck"] == 2 and config["derived_cells"]
    assert CellSupernet.from_config(config).get_config() == config


@pytest.mark.slow  # 1.5 to 2.5 min: two searches' steps traced, one of them four passes long
def test_the_second_order_step_restores_the_weights_and_changes_only_alpha(tmp_path):
    """DARTS' second-order α step (Eq. 7-8) perturbs the weights to w', w+ and w−: afterwards
    the weights are exactly those of the first-order step (the same weight step), α differs."""
    from tfnas.costs import exact_sources
    from tfnas.search import Search, SearchConfig

    network = get_network("darts_search", cells=3, init_channels=4, input_size=8,
                          input_channels=1)
    runs = {}
    for method in ("darts", "darts_2nd"):
        search = Search(SearchConfig(
            space=network, dataset="digits", cost_model=exact_sources(network, 1)["flops"],
            objective=None, model_dir=str(tmp_path / method), method=method, batch_size=16,
            nodes=1, verbose=False))  # (one node: the four passes of the step trace faster)
        images, labels = next(iter(search.weight_data.train(0)))
        arch_images, arch_labels = next(iter(search.arch_data.train(0)))
        search.train_step(images, labels, arch_images, arch_labels)
        runs[method] = search
    first, second = runs["darts"], runs["darts_2nd"]
    for a, b in zip(first.weight_variables, second.weight_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=a.path)
    moved = [float(np.abs(a.numpy() - b.numpy()).max())
             for a, b in zip(first.architecture_variables, second.architecture_variables)]
    assert max(moved) > 1e-4  # the second-order term changed α's step


def _cell_inputs(size=8, channels=8, seed=1):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(2, size, size, channels)).astype("float32"))
            for _ in range(2)]


def test_the_channel_bottleneck_keeps_the_cells_shape_and_narrows_its_ops():
    """DCA-NAS' bottleneck b: the nodes (and every op) at C/b channels, the output expanded
    back to nodes·C, so the next cell sees the same shape; the ops' weights shrink."""
    from tfnas.search.layers.cell import SearchCell

    inputs = _cell_inputs()
    cells = {b: SearchCell(16, False, False, nodes=2, bottleneck=b, name=f"b{b}") for b in (1, 4)}
    outputs = {b: cell(inputs, tf.fill((5, 8), 1 / 8)) for b, cell in cells.items()}
    assert outputs[1].shape == outputs[4].shape == (2, 8, 8, 32)
    sep = {b: [op for op in cell.edge_ops[0] if op.op == "sep_conv_3x3"][0]
           for b, cell in cells.items()}
    assert (sep[1].channels, sep[4].channels) == (16, 4)
    assert sep[4].count_params() < sep[1].count_params() / 3
    with pytest.raises(ValueError, match="do not split by the channel bottleneck"):
        SearchCell(16, False, False, nodes=2, partial=4, bottleneck=8)


@pytest.mark.parametrize("select", ["switch", "mask"])
def test_a_derived_cell_runs_the_chosen_op_of_each_kept_edge_alone(select):
    """Given the derived cell's one-hot, a search cell is that cell: the same output as the
    mixed cell under those weights (the other ops weighed zero), edge weights ignored."""
    from tfnas.search.layers.cell import SearchCell

    inputs = _cell_inputs()
    cell = SearchCell(8, False, False, nodes=2, partial=2, bottleneck=2, select=select,
                      name="c")
    rng = np.random.default_rng(3)
    weights = tf.constant(rng.dirichlet(np.ones(8), 5).astype("float32"))
    chosen = derived_one_hot(weights, None, 2)
    kept = chosen.numpy()
    assert kept.sum() == 4 and set(kept.sum(1)) == {0.0, 1.0}  # node 2 keeps 2 of 3 edges
    mixed = cell(inputs, chosen, training=False)
    derived = cell(inputs, weights, tf.fill((5,), 7.0), chosen, training=False)
    np.testing.assert_allclose(derived.numpy(), mixed.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(cell(inputs, weights, training=False).numpy(), mixed.numpy())


@pytest.mark.e2e
def test_derived_cells_train_their_chosen_ops_alone_and_alpha_learns_from_the_first_cells():
    """DCA-NAS' derived cells: the first cell of each kind mixes by α, the others run the
    cells α derives now. A derived cell's unchosen ops get no gradient; α still does."""
    net = CellSupernet(NETWORK, nodes=2, partial=2, bottleneck=2, derived_cells=True,
                       name="derived")
    images, labels = _images()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, net(images, training=True), from_logits=True))
    variables = net.trainable_variables
    grads = dict(zip((v.path for v in variables), tape.gradient(loss, variables)))
    for alpha in net.alphas.values():
        assert float(tf.reduce_max(tf.abs(grads[alpha.path]))) > 0

    def moved(cell, edge, op):
        paths = [w.path for w in net.cells[cell].edge_ops[edge][CELL_OPS.index(op)].weights
                 if w.trainable]
        return [grads[p] is not None and float(tf.reduce_max(tf.abs(grads[p]))) > 0
                for p in paths]

    # cells: 0 normal (mixed), 1 reduce (mixed), 2 reduce (derived from the reduce α)
    chosen = derived_one_hot(*net.weights_of("reduce"), 2).numpy()
    for e in range(edge_count(2)):
        for o, op in enumerate(CELL_OPS):
            if op in ("none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"):
                continue  # (no weights)
            assert all(moved(1, e, op))  # a mixed cell trains every op
            assert all(moved(2, e, op)) == bool(chosen[e, o]), (e, op)
            assert any(moved(2, e, op)) == bool(chosen[e, o]), (e, op)
