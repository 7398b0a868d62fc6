"""The .tflite files the profiler writes directly are the graphs the TFLite converter makes."""

from __future__ import annotations

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
