"""The .tflite files the profiler writes directly are the graphs the TFLite converter makes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tfnas.deploy import export
from tfnas import nets
from tfnas.latency import timing_models
from tfnas.space import Architecture, get_space


def operators(flatbuffer: bytes) -> list[tuple]:
    """(op code, input shapes, output shapes, options) of every operator, in order."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    shape = (lambda i: tuple(graph.tensors[i].shape) if i >= 0 else None)
    result = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        options = vars(op.builtinOptions) if op.builtinOptions else {}
        result.append((max(code.builtinCode, code.deprecatedBuiltinCode),
                       [shape(i) for i in op.inputs], [shape(i) for i in op.outputs], options))
    return result


@pytest.mark.parametrize("space_name,overrides", [
    ("tiny", {}), ("tiny", {"squeeze_excite": (True,)}),
    pytest.param("cifar", {}, marks=pytest.mark.slow),
    pytest.param("proxyless_mobile", {"input_size": 64}, marks=pytest.mark.slow),
    pytest.param("single_path", {"input_size": 96}, marks=pytest.mark.slow)])
def test_written_network_has_the_converters_operators(space_name, overrides):
    space = get_space(space_name, **overrides)
    arch = Architecture.sample(space, 3)
    model = nets.build(arch)
    rng = np.random.default_rng(0)  # non-zero biases, as in a trained network
    for var in model.weights:
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32))
    converted = operators(export.to_tflite(model))
    written = operators(timing_models.network(arch))
    assert len(written) == len(converted)
    for mine, theirs in zip(written, converted):
        assert mine == theirs


def test_written_models_run_and_a_skip_has_none():
    from ai_edge_litert.interpreter import Interpreter

    space = get_space("tiny")
    sig = space.signature(1, "mbconv_k5_e6")
    for data, shape in [(timing_models.layer(sig), (1, 8, 8, 16)),
                        (timing_models.fixed_parts(space)["head"], (1, 10)),
                        (timing_models.network(Architecture.sample(space, 0)), (1, 10))]:
        interpreter = Interpreter(model_content=data)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        interpreter.set_tensor(detail["index"], np.random.default_rng(0).uniform(
            -1, 1, detail["shape"]).astype(np.float32))
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert out.shape == shape and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="skip"):
        timing_models.layer(space.signature(1, "skip"))


def dataflow(flatbuffer: bytes) -> Counter:
    """Every operator with its code, shapes and options and, recursively, the same of the
    operators it reads: equal Counters are one graph up to the order operators are listed."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    written = {op.outputs[0]: op for op in graph.operators}
    memo: dict[int, int] = {}

    def of(tensor: int) -> int:
        if tensor not in written:
            return hash(("input" if tensor in graph.inputs else "constant",
                         tuple(graph.tensors[tensor].shape)))
        if tensor not in memo:
            op = written[tensor]
            code = model.operatorCodes[op.opcodeIndex]
            inputs = [of(i) for i in op.inputs]
            code = max(code.builtinCode, code.deprecatedBuiltinCode)
            if code == 0:  # ADD commutes
                inputs.sort()
            options = vars(op.builtinOptions) if op.builtinOptions else {}
            memo[tensor] = hash((code, tuple(graph.tensors[tensor].shape), tuple(inputs),
                                 repr(sorted(options.items()))))
        return memo[tensor]

    return Counter(of(op.outputs[0]) for op in graph.operators)


def _cell(*edges, concat=(2, 3, 4, 5)):
    from tfnas.space.cells import Cell

    return Cell(tuple(edges), tuple(concat))


# what the converter does to cells, one case each: a node nobody reads and one read only by
# ReLUs (fused), two pools / strided slices / identical sums of one input (merged), a factorized
# reduce read only by ReLUs (its ADD takes the ReLU), two dil_conv_5x5 of one node (left as
# SPACE_TO_BATCH_ND → depthwise → BATCH_TO_SPACE_ND), an odd map (PAD), the ImageNet stem, the
# auxiliary head
_ODD = _cell(("sep_conv_3x3", 1), ("sep_conv_5x5", 1), ("sep_conv_3x3", 2), ("dil_conv_3x3", 2),
             ("max_pool_3x3", 3), ("avg_pool_3x3", 1), ("skip_connect", 4),
             ("sep_conv_5x5", 3), concat=(3, 4, 5))
_REDUCE = _cell(("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("dil_conv_5x5", 0),
                ("skip_connect", 1), ("avg_pool_3x3", 2), ("max_pool_3x3", 3),
                ("skip_connect", 2), ("dil_conv_3x3", 4))
_TWINS = _cell(("max_pool_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 0), ("skip_connect", 1),
               ("dil_conv_5x5", 0), ("dil_conv_5x5", 0), ("skip_connect", 0),
               ("skip_connect", 1))
_REDUCE_TWINS = _cell(("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0),
                      ("max_pool_3x3", 1), ("max_pool_3x3", 1), ("sep_conv_3x3", 0),
                      ("dil_conv_3x3", 1), ("dil_conv_3x3", 1))
_CELL_CASES = {
    "odd_and_reduce": ("darts28_search", {}, (_ODD, _REDUCE)),
    "twins": ("darts28_search", {}, (_TWINS, _REDUCE_TWINS)),
    "odd_size_imagenet_stem": ("darts_imagenet", {"input_size": 56, "cells": 3,
                                                  "init_channels": 8}, (_REDUCE, _ODD)),
    "auxiliary_head": ("darts_search", {"cells": 6, "auxiliary": True}, (_ODD, _TWINS)),
}


def _cell_arch(case):
    from tfnas.space.cells import CellArchitecture, Genotype, get_network

    if isinstance(case, int):
        return CellArchitecture.sample(get_network("darts28_search", cells=5, init_channels=4),
                                       case)
    name, overrides, cells = _CELL_CASES[case]
    overrides = {"cells": 5, "init_channels": 4, **overrides}
    return CellArchitecture(get_network(name, **overrides), Genotype(*cells))


@pytest.mark.parametrize("case", [
    "odd_and_reduce", "twins",
    *(pytest.param(case, marks=pytest.mark.slow) for case in ("odd_size_imagenet_stem",
                                                              "auxiliary_head", 0, 1, 2, 3, 4))])
def test_written_cell_network_is_the_converters_graph(case):
    arch = _cell_arch(case)
    model = nets.build(arch)
    rng = np.random.default_rng(0)  # a trained network's batch norms: no zero offset to drop
    for var in model.weights:
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32))
    converted = export.to_tflite(model)
    written = timing_models.network(arch)
    assert sorted(map(repr, operators(written))) == sorted(map(repr, operators(converted)))
    assert dataflow(written) == dataflow(converted)


def test_written_cell_network_runs():
    from ai_edge_litert.interpreter import Interpreter

    arch = _cell_arch("auxiliary_head")
    interpreter = Interpreter(model_content=timing_models.network(arch))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.random.default_rng(0).uniform(
        -1, 1, detail["shape"]).astype(np.float32))
    interpreter.invoke()
    for out in interpreter.get_output_details():
        value = interpreter.get_tensor(out["index"])
        assert value.shape == (1, 10) and np.all(np.isfinite(value))


@pytest.mark.parametrize("op,stride", [("sep_conv_5x5", 2), ("dil_conv_3x3", 2),
                                       ("skip_connect", 2), ("avg_pool_3x3", 1)])
def test_written_cell_edge_is_the_converters_graph(op, stride):
    """A per-edge table's row: the op alone on its input (its ReLU not fused: nothing before
    it in that model)."""
    import keras

    from tfnas.blocks import cell_family
    from tfnas.space.cells import EdgeSignature

    sig = EdgeSignature(op, 8, 14, 14, stride)
    inputs = keras.Input((14, 14, 8))
    model = keras.Model(inputs, cell_family(op).build(inputs, keras, sig, "edge"))
    rng = np.random.default_rng(0)
    for var in model.weights:
        var.assign(rng.uniform(0.5, 1.5, var.shape).astype(np.float32))
    written = timing_models.cell_edge(sig)
    assert dataflow(written) == dataflow(export.to_tflite(model))
    with pytest.raises(ValueError, match="identity"):
        timing_models.cell_edge(EdgeSignature("skip_connect", 8, 14, 14, 1))
