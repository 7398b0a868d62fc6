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

Networks of DARTS cells (`cell_network`) are written the same way, op by op, and then
rewritten as the converter rewrites them (`_Graph._finish`): operators without weights that
repeat on the same input are merged (the ReLUs of the edges leaving one node become one),
operators nobody reads are dropped, a ReLU that is the only reader of a CONV_2D, DEPTHWISE or
ADD output is fused into it, and two dilated depthwise convolutions of one kernel size on one
tensor stay SPACE_TO_BATCH_ND → depthwise → BATCH_TO_SPACE_ND (see `_space_to_batch_twins`).

Weights are random (so no batch-norm offset is zero and folded away, as in a trained
network). `tests/test_timing_models.py` checks, for every space preset and for networks of
cells with each of those rewrites, that the operators (codes, tensor shapes, options, and for
cells which operators feed which) equal the converter's for the same architecture, so a
network timed here is the network a deployed model runs; `bench/cell_timing_models.py` times
both side by side.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from tfnas.blocks import family
from tfnas.space import LayerSignature, SearchSpace
from tfnas.space.cells import is_cell_network

_RELU = 1  # ActivationFunctionType.RELU: tfnas nets use keras ReLU() (no cap)
_PADDING = {"SAME": 0, "VALID": 1}
# operators the converter fuses a following ReLU into (when the ReLU is their only reader)
_FUSES_RELU = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")


class _Graph:
    """One subgraph under construction: tensors, constant buffers, operators; written once
    (`flatbuffer`)."""

    def __init__(self, seed: int) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.schema = schema
        self.rng = np.random.default_rng(seed)
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty sentinel
        self.operators: list[Any] = []
        self.codes: list[int] = []
        self._same: dict[tuple, int] = {}  # weightless operators already written → output

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

    def ints(self, values: Any) -> int:
        """An int32 constant (axes, slice bounds, paddings, block shapes)."""
        data = np.array(values, np.int32)
        return self.tensor(data.shape, data)

    def weights(self, *shape: int) -> int:
        fan_in = int(np.prod(shape[1:]))
        return self.tensor(shape, (self.rng.standard_normal(shape) / np.sqrt(fan_in))
                           .astype(np.float32))

    def op(self, code_name: str, inputs: list[int], out_shape: Sequence[int],
           options_name: str | None, **options: Any) -> int:
        """One operator; an operator without weights that was written before on the same
        inputs is not written again (the converter merges such twins: two pools of one node,
        the ReLUs of the edges leaving one node)."""
        key = self._key(code_name, inputs, options)
        if key is not None and key in self._same:
            return self._same[key]
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
            for name, value in options.items():
                setattr(op.builtinOptions, name, value)
        self.operators.append(op)
        if key is not None:
            self._same[key] = out
        return out

    def _key(self, code_name: str, inputs: list[int], options: dict[str, Any]) -> tuple | None:
        """What makes two operators the same: code, inputs (an int constant by its value),
        options; None for an operator with float weights (each has its own)."""
        parts = []
        for i in inputs:
            t = self.tensors[i]
            if t.buffer == 0:
                parts.append(i)
            elif t.type == self.schema.TensorType.INT32:
                parts.append(bytes(self.buffers[t.buffer].data))
            else:
                return None
        return (code_name, tuple(parts), tuple(sorted(
            (name, tuple(v) if isinstance(v, list) else v) for name, v in options.items())))

    def shape(self, tensor: int) -> list[int]:
        return list(self.tensors[tensor].shape)

    # --- layers ---------------------------------------------------------------------------

    def _out(self, x: int, channels: int, kernel: int, stride: int, padding: str) -> list[int]:
        n, h, w, _ = self.shape(x)
        if padding == "SAME":
            return [n, -(-h // stride), -(-w // stride), channels]
        return [n, (h - kernel) // stride + 1, (w - kernel) // stride + 1, channels]

    def conv(self, x: int, filters: int, kernel: int, stride: int, relu: bool,
             padding: str = "SAME") -> int:
        """A convolution with bias (batch norm folded in), ReLU fused or not."""
        c = self.shape(x)[3]
        return self.op("CONV_2D", [x, self.weights(filters, kernel, kernel, c),
                                   self.weights(filters)],
                       self._out(x, filters, kernel, stride, padding), "Conv2DOptions",
                       padding=_PADDING[padding], strideW=stride, strideH=stride,
                       fusedActivationFunction=_RELU if relu else 0)

    def depthwise(self, x: int, kernel: int, stride: int, relu: bool = True,
                  dilation: int = 1) -> int:
        c = self.shape(x)[3]
        return self.op("DEPTHWISE_CONV_2D", [x, self.weights(1, kernel, kernel, c),
                                             self.weights(c)],
                       self._out(x, c, kernel, stride, "SAME"), "DepthwiseConv2DOptions",
                       padding=0, strideW=stride, strideH=stride, depthMultiplier=1,
                       fusedActivationFunction=_RELU if relu else 0,
                       dilationWFactor=dilation, dilationHFactor=dilation)

    def relu(self, x: int) -> int:
        """A ReLU of its own (`finish` fuses it into the operator that wrote `x` when it is
        that tensor's only reader, as the converter does)."""
        return self.op("RELU", [x], self.shape(x), None)

    def pool(self, x: int, kind: str, size: int, stride: int, padding: str = "SAME") -> int:
        """`kind`: MAX or AVERAGE."""
        return self.op(f"{kind}_POOL_2D", [x], self._out(x, self.shape(x)[3], size, stride,
                                                         padding),
                       "Pool2DOptions", padding=_PADDING[padding], strideW=stride,
                       strideH=stride, filterWidth=size, filterHeight=size,
                       fusedActivationFunction=0)

    def add(self, a: int, b: int) -> int:
        """a + b (b may be a per-channel constant)."""
        return self.op("ADD", [a, b], self.shape(a), "AddOptions", fusedActivationFunction=0,
                       potScaleInt16=True)

    def concat(self, parts: Sequence[int]) -> int:
        """Along channels."""
        shape = self.shape(parts[0])
        shape[3] = sum(self.shape(p)[3] for p in parts)
        return self.op("CONCATENATION", list(parts), shape, "ConcatenationOptions", axis=-1,
                       fusedActivationFunction=0)

    def batch_norm(self, x: int) -> int:
        """A batch norm the converter cannot fold (after a concatenation): × scale + offset."""
        c = self.shape(x)[3]
        x = self.op("MUL", [x, self.weights(c)], self.shape(x), "MulOptions",
                    fusedActivationFunction=0)
        return self.add(x, self.weights(c))

    def shift(self, x: int) -> int:
        """x[:, 1:, 1:, :] (Keras' Cropping2D((1, 0), (1, 0)))."""
        n, h, w, c = self.shape(x)
        return self.op("STRIDED_SLICE", [x, self.ints([0, 1, 1, 0]), self.ints([0, 0, 0, 0]),
                                         self.ints([1, 1, 1, 1])], [n, h - 1, w - 1, c],
                       "StridedSliceOptions", beginMask=9, endMask=15)

    def pad_after(self, x: int, rows: int, cols: int) -> int:
        """Zeros after the last `rows` rows and `cols` columns (Keras' ZeroPadding2D)."""
        n, h, w, c = self.shape(x)
        paddings = self.ints([[0, 0], [0, rows], [0, cols], [0, 0]])
        return self.op("PAD", [x, paddings], [n, h + rows, w + cols, c], "PadOptions")

    def dense(self, x: int, units: int) -> int:
        """A linear classifier on [N, C] (or [N, 1, 1, C]: the converter drops a Flatten)."""
        return self.op("FULLY_CONNECTED", [x, self.weights(units, self.shape(x)[-1]),
                                           self.weights(units)],
                       [self.shape(x)[0], units], "FullyConnectedOptions",
                       fusedActivationFunction=0)

    def mean(self, x: int, keep_dims: bool) -> int:
        """Average over H and W."""
        n, _, _, c = self.shape(x)
        axes = self.ints([1, 2])
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
        return self.dense(self.mean(x, keep_dims=False), space.num_classes)

    # --- the model ------------------------------------------------------------------------

    def _finish(self, outputs: list[int]) -> list[int]:
        """What the converter does to a finished graph: drops operators nobody reads (a cell
        input no edge takes), fuses each ReLU into the operator that wrote its input when it
        is that tensor's only reader; returns the outputs, renamed where a ReLU went."""
        def written_by() -> dict[int, Any]:
            return {op.outputs[0]: op for op in self.operators}

        def readers() -> dict[int, list[Any]]:
            found: dict[int, list[Any]] = {}
            for op in self.operators:
                for i in op.inputs:
                    found.setdefault(i, []).append(op)
            return found

        while True:  # drop the unread, until none is left
            read = readers()
            kept = [op for op in self.operators if op.outputs[0] in read
                    or op.outputs[0] in outputs]
            if len(kept) == len(self.operators):
                break
            self.operators = kept
        self._space_to_batch_twins()
        relu = self.codes.index(self.schema.BuiltinOperator.RELU) if (
            self.schema.BuiltinOperator.RELU in self.codes) else None
        code_names = {v: k for k, v in vars(self.schema.BuiltinOperator).items()
                      if not k.startswith("_")}
        for op in [op for op in self.operators if op.opcodeIndex == relu]:
            source, result = op.inputs[0], op.outputs[0]
            writer = written_by().get(source)
            if (writer is None or source in outputs or len(readers()[source]) != 1
                    or code_names[self.codes[writer.opcodeIndex]] not in _FUSES_RELU
                    or writer.builtinOptions.fusedActivationFunction):
                continue
            writer.builtinOptions.fusedActivationFunction = _RELU
            self.operators.remove(op)
            for other in self.operators:
                other.inputs = [source if i == result else i for i in other.inputs]
            outputs = [source if i == result else i for i in outputs]
        return outputs

    def _space_to_batch_twins(self) -> None:
        """TensorFlow runs a dilated depthwise convolution as SPACE_TO_BATCH_ND → depthwise →
        BATCH_TO_SPACE_ND and the converter folds the three back into one dilated operator,
        unless two such convolutions with one kernel size read the same tensor: their
        identical SPACE_TO_BATCH_ND ops are merged first and the fold no longer matches (a
        cell with two dil_conv_5x5 edges from one node). Those stay as the three ops."""
        depthwise = self.schema.BuiltinOperator.DEPTHWISE_CONV_2D
        groups: dict[tuple, list[Any]] = {}
        for op in self.operators:
            if (self.codes[op.opcodeIndex] == depthwise
                    and op.builtinOptions.dilationHFactor > 1):
                kernel = self.shape(op.inputs[1])[1]
                groups.setdefault((op.inputs[0], kernel, op.builtinOptions.dilationHFactor),
                                  []).append(op)
        for (x, kernel, dilation), ops in groups.items():
            if len(ops) < 2:
                continue
            n, h, w, c = self.shape(x)
            total = (kernel - 1) * dilation  # SAME padding of the dilated kernel
            start = total // 2
            extra = [(-(size + total)) % dilation for size in (h, w)]
            block = [dilation, dilation]
            spread = self.op("SPACE_TO_BATCH_ND", [x, self.ints(block), self.ints(
                [[start, total - start + e] for e in extra])],
                [n * dilation ** 2, (h + total + extra[0]) // dilation,
                 (w + total + extra[1]) // dilation, c], None)
            first = min(self.operators.index(op) for op in ops)
            for op in ops:
                at = self.operators.index(op)
                _, hs, ws, _ = self.shape(spread)
                y = self.op("DEPTHWISE_CONV_2D", [spread, *op.inputs[1:]],
                            [n * dilation ** 2, hs - kernel + 1, ws - kernel + 1, c],
                            "DepthwiseConv2DOptions", padding=1, strideW=1, strideH=1,
                            depthMultiplier=1, fusedActivationFunction=0)
                self.op("BATCH_TO_SPACE_ND", [y, self.ints(block), self.ints(
                    [[0, e] for e in extra])], [n, h, w, c], None)
                self.operators[-1].outputs = op.outputs  # its readers read it unchanged
                self.operators[at:at + 1] = self.operators[-2:]
                del self.operators[-2:]
            self.operators.insert(first, self.operators.pop())  # the SPACE_TO_BATCH_ND

    def flatbuffer(self, inputs: int, outputs: int | Sequence[int]) -> bytes:
        from ai_edge_litert.tools import flatbuffer_utils

        schema = self.schema
        outputs = self._finish([outputs] if isinstance(outputs, int) else list(outputs))
        # only the tensors, buffers and codes the remaining operators use
        used = sorted({inputs, *outputs} | {i for op in self.operators
                                             for i in (*op.inputs, *op.outputs)})
        tensor_id = {old: new for new, old in enumerate(used)}
        buffers = [self.buffers[0]]
        tensors = []
        for old in used:
            t = self.tensors[old]
            if t.buffer:
                buffers.append(self.buffers[t.buffer])
                t.buffer = len(buffers) - 1
            tensors.append(t)
        codes = sorted({self.codes[op.opcodeIndex] for op in self.operators},
                       key=self.codes.index)
        for op in self.operators:
            op.opcodeIndex = codes.index(self.codes[op.opcodeIndex])
            op.inputs = [tensor_id[i] for i in op.inputs]
            op.outputs = [tensor_id[i] for i in op.outputs]
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.operators = tensors, self.operators
        subgraph.inputs = [tensor_id[inputs]]
        subgraph.outputs, subgraph.name = [tensor_id[i] for i in outputs], "main"
        model = schema.ModelT()
        model.version, model.description = 3, "tfnas timing model"
        model.subgraphs, model.buffers = [subgraph], buffers
        model.operatorCodes = []
        for code in codes:
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            model.operatorCodes.append(oc)
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def network(arch: Any, seed: int = 0) -> bytes:
    """The whole network of `arch` (batch 1, float32), as `tfnas.nets.build` converts: a
    layer space's or a network of DARTS cells (`cell_network`)."""
    if is_cell_network(arch.space):
        return cell_network(arch, seed)
    space = arch.space
    g = _Graph(seed)
    x = inputs = g.tensor([1, space.input_size, space.input_size, space.input_channels])
    x = g.stem(x, space)
    for sig in arch.signatures():
        x = g.block(x, sig)
    return g.flatbuffer(inputs, g.head(x, space))


def cell_network(arch: Any, seed: int = 0) -> bytes:
    """A network of DARTS cells (`tfnas.nets.cells`, a `CellArchitecture`) as the converter
    builds it: the stem's convolutions; per cell its two preprocessed inputs, every edge's
    operators (written by the op's family module, `tfnas.blocks.cell_family`), an ADD per
    node and the CONCATENATION of the output; MEAN and FULLY_CONNECTED (with the auxiliary
    head, its operators and a second output). The ReLUs of the edges leaving one node are
    one operator, fused into the convolution before it when they are its only readers."""
    from tfnas.blocks import cell_family, cell_units

    n = arch.network
    g = _Graph(seed)
    x = inputs = g.tensor([1, n.input_size, n.input_size, n.input_channels])
    c = n.init_channels
    if n.stem == "cifar":
        s0 = s1 = g.conv(x, n.stem_multiplier * c, 3, 1, relu=False)
    else:
        x = g.conv(x, c // 2, 3, 2, relu=True)
        s0 = g.conv(x, c, 3, 2, relu=False)
        s1 = g.conv(g.relu(s0), c, 3, 2, relu=False)
    aux = None
    for plan in arch.plan():
        pre0 = (cell_units.factorized_reduce_timing if plan.reduction_prev
                else cell_units.relu_conv_bn_timing)(g, s0, plan.channels)
        states = [pre0, cell_units.relu_conv_bn_timing(g, s1, plan.channels)]
        for node in range(plan.cell.nodes):
            a, b = (cell_family(plan.edge(i).op).timing(g, states[plan.cell.edges[i][1]],
                                                        plan.edge(i))
                    for i in (2 * node, 2 * node + 1))
            states.append(g.add(a, b))
        s0, s1 = s1, g.concat([states[i] for i in plan.cell.concat])
        if n.auxiliary and plan.index == n.reduction_cells[1]:
            aux = _auxiliary_head(g, s1, arch)
    logits = g.dense(g.mean(s1, keep_dims=False), n.num_classes)
    return g.flatbuffer(inputs, [logits] if aux is None else [logits, aux])


def cell_edge(sig: Any, seed: int = 0) -> bytes:
    """Only the op of one edge of a DARTS cell (`EdgeSignature`), on its input: a row of a
    per-edge latency table (`tfnas.latency.cell_table`); not for an identity edge (no
    operator)."""
    from tfnas.blocks import cell_family

    if sig.op == "skip_connect" and sig.stride == 1:
        raise ValueError("skip_connect with stride 1 is the identity: it has no timing model")
    g = _Graph(seed)
    inputs = g.tensor([1, sig.height, sig.width, sig.channels])
    return g.flatbuffer(inputs, cell_family(sig.op).timing(g, inputs, sig))


def _auxiliary_head(g: _Graph, x: int, arch: Any) -> int:
    from tfnas.space.cells import AUX_CHANNELS

    a, b = AUX_CHANNELS
    x = g.pool(g.relu(x), "AVERAGE", 5, arch.aux_pool_stride(), padding="VALID")
    x = g.conv(x, a, 1, 1, relu=True)
    x = g.conv(x, b, 2, 1, relu=True, padding="VALID")
    return g.dense(x, arch.network.num_classes)


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
