"""Float32 .tflite models for timing, written straight to the flatbuffer (no TensorFlow).

Profiling needs hundreds of models (one per LayerSignature, whole networks to calibrate and to
train a predictor), and the TFLite converter spends 3 s on a 5-layer 16x16 network and 14 s on
a 224x224 Single-Path network on this host, nearly all of it fixed MLIR pass overhead. Timing
does not need trained weights, only the same graph: these writers emit, in milliseconds, the
operators the converter emits for a `tfnas.nets` network after it folds batch norm into the
convolutions and fuses the ReLUs:

    stem      CONV_2D 3x3 (ReLU)                     [+ the fixed first MBConv]
    layers    each op's operators, written by its family module (`tfnas.blocks`)
    head      CONV_2D 1x1 (ReLU) → MEAN over H, W → FULLY_CONNECTED

All padding is SAME, weights are random. `tests/test_timing_models.py` checks, for every space
preset, that the operator list (codes, tensor shapes, options) equals the converter's output
for the same architecture, so a row timed here is the row a deployed network runs.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfnas.blocks import family
from tfnas.space import LayerSignature, SearchSpace
from tfnas.space.cells import is_cell_network

_RELU = 1  # ActivationFunctionType.RELU: tfnas nets use keras ReLU() (no cap)


class _Graph:
    """One subgraph under construction: tensors, constant buffers, operators."""

    def __init__(self, seed: int) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.schema = schema
        self.rng = np.random.default_rng(seed)
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list[Any] = []
        self.codes: list[int] = []

    def tensor(self, shape: Sequence[int], data: np.ndarray | None = None) -> int:
        t = self.schema.TensorT()
        t.shape = list(shape)
        t.type = self.schema.TensorType.INT32 if (
            data is not None and data.dtype == np.int32) else self.schema.TensorType.FLOAT32
        t.name = f"t{len(self.tensors)}"
        if data is not None:
            buf = self.schema.BufferT()
            buf.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def weights(self, *shape: int) -> int:
        fan_in = int(np.prod(shape[1:]))
        return self.tensor(shape, (self.rng.standard_normal(shape) / np.sqrt(fan_in))
                           .astype(np.float32))

    def op(self, code_name: str, inputs: list[int], out_shape: Sequence[int],
           options_name: str | None, **options: Any) -> int:
        schema = self.schema
        code = getattr(schema.BuiltinOperator, code_name)
        if code not in self.codes:
            self.codes.append(code)
        out = self.tensor(out_shape)
        op = schema.OperatorT()
        op.opcodeIndex = self.codes.index(code)
        op.inputs, op.outputs = inputs, [out]
        if options_name is not None:
            op.builtinOptionsType = getattr(schema.BuiltinOptions, options_name)
            op.builtinOptions = getattr(schema, options_name + "T")()
            for key, value in options.items():
                setattr(op.builtinOptions, key, value)
        self.operators.append(op)
        return out

    def shape(self, tensor: int) -> list[int]:
        return list(self.tensors[tensor].shape)

    # --- layers ---------------------------------------------------------------------------

    def conv(self, x: int, filters: int, kernel: int, stride: int, relu: bool) -> int:
        _, h, w, c = self.shape(x)
        out = [1, -(-h // stride), -(-w // stride), filters]
        return self.op("CONV_2D", [x, self.weights(filters, kernel, kernel, c),
                                   self.weights(filters)], out, "Conv2DOptions",
                       padding=0, strideW=stride, strideH=stride,
                       fusedActivationFunction=_RELU if relu else 0)

    def depthwise(self, x: int, kernel: int, stride: int) -> int:
        _, h, w, c = self.shape(x)
        out = [1, -(-h // stride), -(-w // stride), c]
        return self.op("DEPTHWISE_CONV_2D", [x, self.weights(1, kernel, kernel, c),
                                             self.weights(c)], out, "DepthwiseConv2DOptions",
                       padding=0, strideW=stride, strideH=stride, depthMultiplier=1,
                       fusedActivationFunction=_RELU)

    def mean(self, x: int, keep_dims: bool) -> int:
        """Average over H and W."""
        n, _, _, c = self.shape(x)
        axes = self.tensor([2], np.array([1, 2], np.int32))
        return self.op("MEAN", [x, axes], [n, 1, 1, c] if keep_dims else [n, c],
                       "ReducerOptions", keepDims=keep_dims)

    def block(self, x: int, sig: LayerSignature) -> int:
        """The operators of the op `sig` describes (its family module writes them)."""
        return family(sig.op).timing(self, x, sig)

    def stem(self, x: int, space: SearchSpace) -> int:
        x = self.conv(x, space.stem_channels, 3, space.stem_stride, relu=True)
        return self.block(x, space.first_layer) if space.first_layer is not None else x

    def head(self, x: int, space: SearchSpace) -> int:
        if space.last_layer is not None:
            x = self.block(x, space.last_layer)
        x = self.conv(x, space.head_channels, 1, 1, relu=True)
        x = self.mean(x, keep_dims=False)
        return self.op("FULLY_CONNECTED", [x, self.weights(space.num_classes,
                                                           space.head_channels),
                                           self.weights(space.num_classes)],
                       [1, space.num_classes], "FullyConnectedOptions",
                       fusedActivationFunction=0)

    # --- the model ------------------------------------------------------------------------

    def flatbuffer(self, inputs: int, outputs: int) -> bytes:
        from ai_edge_litert.tools import flatbuffer_utils

        schema = self.schema
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.operators = self.tensors, self.operators
        subgraph.inputs, subgraph.outputs, subgraph.name = [inputs], [outputs], "main"
        model = schema.ModelT()
        model.version, model.description = 3, "tfnas timing model"
        model.subgraphs, model.buffers = [subgraph], self.buffers
        model.operatorCodes = []
        for code in self.codes:
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            model.operatorCodes.append(oc)
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def network(arch: Any, seed: int = 0) -> bytes:
    """The whole network of `arch` (batch 1, float32), as `tfnas.nets.build` converts. Networks
    of DARTS cells have no hand-written graph here yet: a meter times them as the converter
    builds them (`Meter.network_model`, `tfnas.deploy.export.converted_network`)."""
    if is_cell_network(arch.space):
        raise ValueError("no hand-written timing model of a network of DARTS cells: time it "
                         "with Meter(network_model=tfnas.deploy.export.converted_network)")
    space = arch.space
    g = _Graph(seed)
    x = inputs = g.tensor([1, space.input_size, space.input_size, space.input_channels])
    x = g.stem(x, space)
    for sig in arch.signatures():
        x = g.block(x, sig)
    return g.flatbuffer(inputs, g.head(x, space))


def layer(sig: LayerSignature, seed: int = 0) -> bytes:
    """Only the op of `sig` (not for skip, which adds no operator)."""
    if sig.op.is_skip:
        raise ValueError("a skip layer adds no operator: it has no timing model")
    g = _Graph(seed)
    inputs = g.tensor([1, sig.height, sig.width, sig.c_in])
    return g.flatbuffer(inputs, g.block(inputs, sig))


def fixed_parts(space: SearchSpace, seed: int = 0) -> dict[str, bytes]:
    """The stem (with the fixed first layer) and the head (with the fixed last layer), as two
    models."""
    g = _Graph(seed)
    inputs = g.tensor([1, space.input_size, space.input_size, space.input_channels])
    stem = g.flatbuffer(inputs, g.stem(inputs, space))
    g = _Graph(seed)
    size = space.final_size
    inputs = g.tensor([1, size, size, space.layers[-1].c_out])
    return {"stem": stem, "head": g.flatbuffer(inputs, g.head(inputs, space))}
