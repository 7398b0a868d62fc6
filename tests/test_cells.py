"""The DARTS cell space: published genotypes from their text, exact params and FLOPs of the
built Keras networks, every op through TFLite, bad genotypes as one error each."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import flops_from_model
from tfnas import nets
from tfnas.errors import TfnasError
from tfnas.space.cells import (PUBLISHED, CellArchitecture, Genotype, cell_architecture,
                               get_network)

SMALL = {"cells": 5, "init_channels": 8}
# every op; on the reduction cell each one also on an edge from an input (stride 2)
EVERY_OP = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_5x5', 1), ('dil_conv_3x3', 2), "
            "('dil_conv_5x5', 1), ('max_pool_3x3', 3), ('avg_pool_3x3', 2), ('skip_connect', 4),"
            " ('skip_connect', 0)], normal_concat=[2, 3, 4, 5], reduce=[('sep_conv_5x5', 0), "
            "('dil_conv_3x3', 1), ('dil_conv_5x5', 0), ('skip_connect', 1), ('max_pool_3x3', 0),"
            " ('avg_pool_3x3', 1), ('sep_conv_3x3', 4), ('avg_pool_3x3', 3)], "
            "reduce_concat=range(2, 6))")


def test_published_genotypes_round_trip_through_their_text_and_json():
    for name, text in PUBLISHED.items():
        genotype = Genotype.parse(text)
        assert Genotype.parse(genotype.to_text()) == genotype, name
        assert Genotype.from_dict(json.loads(json.dumps(genotype.to_dict()))) == genotype
        for cell in (genotype.normal, genotype.reduce):
            assert cell.nodes == 4 and len(cell.edges) == 8 and cell.concat == (2, 3, 4, 5)
    # as the code bases write them: an assignment, range(2, 6) for the concat
    assert Genotype.parse("PCDARTS = " + PUBLISHED["pc_darts_cifar"]) == \
        Genotype.named("pc_darts_cifar")
    assert Genotype.named("darts_v2").normal.edges[7] == ("dil_conv_3x3", 2)


@pytest.mark.parametrize("network,overrides", [
    pytest.param("darts_search", {}, marks=pytest.mark.e2e),  # 12 s
    ("darts28", SMALL),
    ("darts_cifar", {**SMALL, "auxiliary": True}),
    ("darts_imagenet", {"cells": 3, "init_channels": 8, "auxiliary": True}),
])
def test_params_and_flops_match_the_built_model_exactly(network, overrides):
    for genotype in (*PUBLISHED, Genotype.parse(EVERY_OP)):
        arch = cell_architecture(network, genotype, **overrides)
        model = nets.build(arch)
        assert arch.params() == model.count_params(), (network, genotype)
        assert arch.flops() == flops_from_model(model), (network, genotype)
        outputs = model.outputs
        assert len(outputs) == (2 if arch.network.auxiliary else 1)
        assert all(tuple(o.shape) == (None, arch.network.num_classes) for o in outputs)


def test_the_cell_plan_halves_the_map_and_doubles_the_channels_at_one_and_two_thirds():
    arch = cell_architecture("darts_cifar", "darts_v2")
    plans = arch.plan()
    assert [p.index for p in plans if p.reduction] == [6, 13]
    assert [p.channels for p in plans][5:8] == [36, 72, 72] and plans[-1].channels == 144
    assert plans[-1].out_size == 8 and plans[7].reduction_prev and plans[7].size_prev == 16
    # a reduction cell's edges from its inputs have stride 2, the others stride 1
    assert [plans[6].edge(i).stride for i in range(8)] == [2, 2, 1, 2, 2, 1, 1, 2]
    mobile = cell_architecture("darts_imagenet", "darts_v2").plan()
    assert mobile[0].size_prev_prev == 56 and mobile[0].size_prev == 28
    assert mobile[0].reduction_prev and mobile[-1].out_size == 7


@pytest.mark.e2e
def test_the_papers_evaluation_networks_have_their_published_params():
    """Trainable weights without the auxiliary head, as PyTorch counts them: DARTS (second
    order, the V2 cell) 3.3M and PC-DARTS 3.6M on CIFAR-10 in their papers' tables."""
    for name, published in (("darts_v2", 3.3), ("pc_darts_cifar", 3.6)):
        model = nets.build(cell_architecture("darts_cifar", name))
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert round(trainable / 1e6, 1) == published, (name, trainable)


@pytest.mark.e2e
def test_every_op_at_both_strides_exports_to_tflite_and_agrees_with_keras():
    from ai_edge_litert.interpreter import Interpreter

    from test_export import _litert_logits
    from tfnas.deploy import export

    arch = cell_architecture("darts28", Genotype.parse(EVERY_OP), **SMALL)
    model = nets.build(arch)
    shape = (28, 28, 1)
    nets.recalibrate_batchnorm(model, export.representative_inputs(shape, 64, seed=9))
    flatbuffer = export.to_tflite(model, arch=arch)
    images = export.representative_inputs(shape, 8, seed=1)
    got = _litert_logits(flatbuffer, images)
    ref = np.asarray(model(images, training=False))
    assert ref.std() > 0.05  # meaningful logits
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5
    ops = {op["op_name"] for op in Interpreter(model_content=flatbuffer)._get_ops_details()}
    assert {"DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION"} <= ops
    embedded = export.read_metadata(flatbuffer, export.METADATA_NAME)
    assert CellArchitecture.from_dict(json.loads(embedded)) == arch


@pytest.mark.parametrize("text,message", [
    (EVERY_OP.replace("'max_pool_3x3', 3", "'conv_9x9', 3"), "unknown op 'conv_9x9'"),
    (EVERY_OP.replace("('skip_connect', 4)", "('skip_connect', 6)"),
     "edge 6 into node 5 comes from node 6"),
    (EVERY_OP.replace(", ('skip_connect', 0)]", "]"), "node 5 of the normal cell has one input"),
    (EVERY_OP.replace("('sep_conv_5x5', 1)", "('none', 1)"), "keeps no zero op"),
    (EVERY_OP.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 7]"),
     "concatenates nodes [2, 7]"),
    (EVERY_OP.replace("Genotype(", "Genotype(normal_extra=[], "), "unknown genotype field"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed genotype text"),
    ("{\"normal\": []}", "has 'normal' and 'reduce'"),
])
def test_a_bad_genotype_is_one_error(text, message):
    with pytest.raises(TfnasError) as err:
        Genotype.parse(text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_networks_check_their_settings():
    with pytest.raises(TfnasError, match="at least 3 cells"):
        get_network("darts_cifar", cells=2)
    with pytest.raises(TfnasError, match="init_channels must be even"):
        get_network("darts_cifar", init_channels=15)
    with pytest.raises(TfnasError, match="turn the auxiliary head off"):
        cell_architecture("darts_search", "darts_v2", input_size=64, auxiliary=True).params()
    with pytest.raises(TfnasError, match="unknown genotype 'darts_v3'"):
        Genotype.load("darts_v3")


def test_make_arch_writes_a_published_cell_network_that_loads_back(tmp_path):
    from conftest import run_tool
    from tfnas.space import load_architecture

    out = tmp_path / "darts.json"
    done = run_tool("make_arch.py", "--genotype=pc_darts_cifar", "--space=darts28",
                    "--cells=5", "--init_channels=8", f"--out={out}")
    assert done.returncode == 0, done.stderr
    arch = load_architecture(out)
    assert arch == cell_architecture("darts28", "pc_darts_cifar", **SMALL)
    assert f"{arch.params():,} params" in done.stdout and "node 5 = " in done.stdout


def test_drop_path_drops_whole_examples_and_rescales_the_rest():
    """FractalNet's local drop-path as DARTS trains: per example all or nothing, kept ones
    scaled by 1/(1 - p); the identity in inference and at p = 0."""
    import keras

    from tfnas.nets.drop_path import DropPath

    layer = DropPath(0.3, seed=1)
    x = np.ones((4000, 2, 2, 3), "float32")
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    per_example = y.reshape(4000, -1)
    assert set(np.unique(per_example.min(1))) == set(np.unique(per_example.max(1)))
    assert np.allclose(np.unique(y), [0.0, 1 / 0.7])
    assert abs((per_example[:, 0] == 0).mean() - 0.3) < 0.03
    assert np.array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    layer.rate.assign(0.0)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(x, training=True)), x)
    assert DropPath.from_config(layer.get_config()).get_config() == layer.get_config()


def test_the_training_network_has_drop_path_on_every_edge_but_the_identities():
    from tfnas.nets.drop_path import DropPath

    arch = cell_architecture("darts28", "darts_v2", auxiliary=True, **SMALL)
    plain, training = nets.build(arch), nets.build(arch, drop_path=True)
    drops = [layer.name for layer in training.layers if isinstance(layer, DropPath)]
    plans = list(arch.plan())
    identities = sum(1 for plan in plans for i in range(8)
                     if plan.edge(i).op == "skip_connect" and plan.edge(i).stride == 1)
    assert len(drops) == 8 * len(plans) - identities and identities > 0
    def weights(model):  # by layer: what the trainer copies into the saved network
        return {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers
                if layer.weights and not isinstance(layer, DropPath)}

    assert weights(plain) == weights(training)
    with pytest.raises(ValueError, match="networks of DARTS cells"):
        from tfnas.space import Architecture, get_space

        space = get_space("tiny")
        nets.build(Architecture.uniform(space, space.largest_op), drop_path=True)


@pytest.mark.long  # a whole training run: 75 s here
@pytest.mark.e2e
def test_training_with_the_auxiliary_head_and_drop_path_saves_the_network_of_the_arch(tmp_path):
    """DARTS' evaluation recipe: loss + 0.4 · auxiliary loss, drop-path rising to p; the
    saved model is the network of arch.json (two outputs, no drop-path layers), evaluated on
    its logits."""
    import subprocess

    import keras

    from conftest import ROOT, train_command

    arch_file = tmp_path / "aux.json"  # 3 cells: the head reads the last (7x7) cell
    arch = cell_architecture("darts28", "darts_v2", auxiliary=True, cells=3, init_channels=8)
    arch.save(arch_file)
    out = subprocess.run(train_command(arch_file, tmp_path / "run", "--dataset=digits",
                                       "--epochs=2", "--drop_path=0.2"),
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    assert report["drop_path"] == 0.2 and report["auxiliary_weight"] == 0.4
    assert report["top1"] > 0.2, report["top1"]  # 10 classes: 0.30 here after 2 epochs
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert len(model.outputs) == 2
    assert not any(type(layer).__name__ == "DropPath" for layer in model.layers)
    assert model.count_params() == nets.build(arch).count_params()
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 3 and "nan" not in rows[-1]  # top-1 logged by the logits' name


def test_la_darts_encoding_marks_the_kept_op_of_each_kept_edge():
    """LA-DARTS Sec. 3.2: 14 edges x 8 ops per cell, 1 where the derived cell keeps the op on
    the edge (8 ones, two per node); the derivation of the search network reads it back."""
    from tfnas.search.cell_supernet import derive_cell
    from tfnas.space.cells import CELL_OPS, Cell, edge_sources

    arch = cell_architecture("darts28", "darts_v2", **SMALL)
    code = arch.one_hot()
    assert code.shape == (14, 8) and code.sum() == 8
    assert code[edge_sources(4).index((2, 0)), CELL_OPS.index("sep_conv_3x3")] == 1
    both = arch.one_hot(reduce=True)
    assert both.shape == (28, 8) and np.array_equal(both[14:], arch.genotype.reduce.one_hot())
    rng = np.random.default_rng(0)
    for _ in range(20):
        cell = Cell.sample(4, rng)
        cell.check("sampled")
        assert derive_cell(cell.one_hot(), None, 4) == cell
    sampled = CellArchitecture.sample(arch.network, 7)
    assert sampled == CellArchitecture.sample(arch.network, 7)
    assert sampled != CellArchitecture.sample(arch.network, 8)


def test_mixed_sampling_spans_cells_of_convolutions_to_cells_of_pools_and_skips():
    """Uniform draws put 3 of 7 edges on a parameter-free op, and almost never 0 or 8 of 8 in a
    cell; `mixed` cells draw their own share, so both ends come up often."""
    from tfnas.space.cells import FREE_OPS, Cell

    def free_counts(sampling):
        rng = np.random.default_rng(0)
        return np.array([sum(op in FREE_OPS for op, _ in Cell.sample(4, rng, sampling).edges)
                         for _ in range(400)])

    uniform, mixed = free_counts("uniform"), free_counts("mixed")
    assert set(FREE_OPS) == {"max_pool_3x3", "avg_pool_3x3", "skip_connect"}
    assert abs(uniform.mean() - 8 * 3 / 7) < 0.3 and abs(mixed.mean() - 4) < 0.4
    extremes = (lambda c: np.mean((c == 0) | (c == 8)))
    assert extremes(uniform) < 0.02 and extremes(mixed) > 0.15
    for cell in (Cell.sample(4, np.random.default_rng(s), "mixed") for s in range(20)):
        cell.check("sampled")
    with pytest.raises(TfnasError, match="uniform or mixed"):
        Cell.sample(4, np.random.default_rng(0), "skewed")


@pytest.mark.e2e
def test_a_cell_networks_latency_dataset_and_predictor(tmp_path):
    """Random derived cells measured into a resumable dataset and an MLP on LA-DARTS' encoding
    fitted to them, saved and loaded."""
    from tfnas.latency import measured
    from tfnas.latency.meter import Meter, default_reference
    from tfnas.latency.predictor import LatencyPredictor, fit
    from tfnas.latency.devices import parse_device

    network = get_network("darts28", cells=3, init_channels=4)
    meter = Meter(parse_device("local", threads=1), runs=3, warmup=1, min_seconds=0,
                  reference=default_reference(network), repeats=1)
    path = tmp_path / "cells.json"
    archs, ms = measured.collect(path, network, meter, 4, seed=0, progress=False, nodes=2)
    assert len({measured.key(a) for a in archs}) == 4 and min(ms) > 0
    again, ms_again, _ = measured.load(path, network)
    assert again == archs and ms_again == ms
    model = fit(network, archs, ms, hidden=(8,), steps=50, reduce_cell=True)
    model.save(tmp_path / "lpm.json")
    loaded = LatencyPredictor.load(tmp_path / "lpm.json")
    assert loaded.reduce_cell and len(loaded.weights[0]) == 2 * 5 * 8  # 2 nodes: 5 edges
    np.testing.assert_allclose(loaded.predict(archs), model.predict(archs))
    with pytest.raises(TfnasError, match="another space"):
        measured.load(path, get_network("darts28", cells=3, init_channels=8))
