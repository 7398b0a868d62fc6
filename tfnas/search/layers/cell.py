"""The DARTS search cell: every edge a mixed op over the eight cell ops, weighted by the
softmax of the architecture parameters α (DARTS, Liu et al. 2019, Eq. 2), optionally with
PC-DARTS' partial channel connections and edge normalisation (Xu et al. 2020, Eq. 2 and 4).

- `CellEdgeOp`: one op of one edge, built by the op's family module (`tfnas.blocks`) as in the
  derived network, with DARTS' search-time changes: batch norm without learned scale and
  offset, and a BN after the pooling ops; `none` is the zero op (zeros of the edge's output
  shape, DARTS' `Zero`).
- `SearchCell`: the two inputs preprocessed to C channels, node j = Σ_i Σ_o w_{i,j,o}·o(x_i)
  over all earlier nodes i (14 edges for 4 nodes), the output the concatenation of the
  nodes. With `partial` K > 1 only C/K channels of an input enter the edge's ops and the rest
  bypass them (max-pooled 2x2 on a reduction edge), then the channels are shuffled in K
  groups (PC-DARTS Eq. 2); the weights of the edges into a node may be scaled by the
  softmax of their β (edge normalisation, Eq. 4), which the caller passes in. With `share`
  (DCA-NAS, Dutta et al. 2022), the edges leaving one node share their ops (weights and
  outputs): 5 op sets per cell of 4 nodes instead of 14. DCA-NAS' two other search-time
  reductions (Sec. 3.4): with `bottleneck` b > 1 the 1x1 preprocessing of the inputs maps
  them to C/b channels, every node and op works at C/b, and a 1x1 ReLU-conv-BN expands the
  concatenated nodes back to nodes·C (the cell's output shape is unchanged; the ops' FLOPs
  fall about b² times); given `chosen` (the one-hot of the derived cell, `derived_one_hot`),
  the cell is a derived cell: each kept edge runs its chosen op alone and the others nothing
  (`select="switch"`, `keras.ops.switch`), or, with `select="mask"`, every op under the
  one-hot (the same values; compiles fast under XLA off TPUs).

The α and β are the supernet's (one set for all normal cells, one for all reduction cells)
and reach each cell as its `call` arguments.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
from keras import ops

from tfnas.blocks import cell_family, cell_units
from tfnas.blocks.common import batch_norm
from tfnas.run import checkpoints
from tfnas.search.layers.mixed import SELECTS
from tfnas.space.cells import CELL_OPS, INPUT_NODES, EdgeSignature, edge_sources

_NONE = CELL_OPS.index("none")


@keras.saving.register_keras_serializable(package="tfnas")
class CellEdgeOp(keras.layers.Layer):
    """One candidate op of one search-cell edge (see the module docstring)."""

    def __init__(self, op: str, channels: int, stride: int, sync_bn: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if op not in CELL_OPS:
            raise ValueError(f"unknown cell op {op!r}")
        self.op, self.channels, self.stride = op, int(channels), int(stride)
        self.sync_bn = bool(sync_bn)

    def build(self, input_shape: Sequence[int | None]) -> None:
        if self.op != "none":
            h, w = input_shape[1], input_shape[2]
            sig = EdgeSignature(self.op, self.channels, int(h), int(w), self.stride)
            inputs = keras.Input(tuple(input_shape[1:]))
            x = cell_family(self.op).build(inputs, keras, sig, "op", self.sync_bn, False)
            if "pool" in self.op:  # DARTS' search cells normalise the pooled maps
                x = batch_norm(keras, "op_pool_bn", self.sync_bn, affine=False)(x)
            self.net = keras.Model(inputs, x)
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if self.op == "none":
            return ops.zeros_like(inputs[:, ::self.stride, ::self.stride, :])
        return self.net(inputs, training=training)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        h, w = (None if s is None else -(-s // self.stride) for s in input_shape[1:3])
        return (input_shape[0], h, w, input_shape[3])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(op=self.op, channels=self.channels, stride=self.stride,
                      sync_bn=self.sync_bn)
        return config


def channel_shuffle(x: Any, groups: int) -> Any:
    """ShuffleNet's channel shuffle (PC-DARTS' `channel_shuffle`, NHWC): channel g·(C/K) + c
    moves to c·K + g."""
    if groups == 1:
        return x
    _, h, w, c = x.shape
    x = ops.reshape(x, (-1, h, w, groups, c // groups))
    x = ops.transpose(x, (0, 1, 2, 4, 3))
    return ops.reshape(x, (-1, h, w, c))


@keras.saving.register_keras_serializable(package="tfnas")
class SearchCell(keras.layers.Layer):
    """A DARTS search cell (see the module docstring).

    Args:
        channels: C, the channels of every node.
        reduction: a reduction cell (stride 2 on the edges from its inputs).
        reduction_prev: the first input has twice the second's resolution (factorized reduce).
        nodes: intermediate nodes (DARTS: 4).
        partial: K of PC-DARTS (1: DARTS, every channel through every op).
        sync_bn: cross-replica batch norm.
        share: DCA-NAS' weight sharing (Sec. 3.4): the edges leaving one node share each
            op's weights, so each op runs once per source node (the edges keep their own α).
        bottleneck: DCA-NAS' channel bottleneck b: the nodes work at C/b channels.
        select: how a derived cell runs its chosen ops: `switch` or `mask` (`MixedOp`'s).
    """

    def __init__(self, channels: int, reduction: bool, reduction_prev: bool, nodes: int = 4,
                 partial: int = 1, sync_bn: bool = False, share: bool = False,
                 bottleneck: int = 1, select: str = "switch", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_widths(channels, partial, bottleneck)
        if select not in SELECTS:
            raise ValueError(f"select must be one of {SELECTS}, got {select!r}")
        self.channels, self.reduction = int(channels), bool(reduction)
        self.reduction_prev, self.nodes = bool(reduction_prev), int(nodes)
        self.partial, self.sync_bn, self.share = int(partial), bool(sync_bn), bool(share)
        self.bottleneck, self.select = int(bottleneck), select
        self.width = self.channels // self.bottleneck  # the nodes' channels
        self.edges = edge_sources(self.nodes)

        def op_layers(source: int, name: str) -> list[CellEdgeOp]:
            stride = 2 if self.reduction and source < INPUT_NODES else 1
            return [CellEdgeOp(op, self.width // self.partial, stride, self.sync_bn,
                               name=f"{name}_{op}") for op in CELL_OPS]

        # DCA-NAS (`share`): the edges from one node share each op's weights (and output)
        shared = {source: op_layers(source, f"s{source}")
                  for source in sorted({s for _, s in self.edges})} if self.share else {}
        self.edge_ops = [shared[source] if self.share else op_layers(source, f"e{e}")
                         for e, (_, source) in enumerate(self.edges)]
        checkpoints.track_children(self, "edge_ops", self.edge_ops)

    def build(self, input_shape: Sequence[Sequence[int | None]]) -> None:
        s0_shape, s1_shape = input_shape
        c = self.width
        for shape, first in ((s0_shape, True), (s1_shape, False)):
            inputs = keras.Input(tuple(shape[1:]))
            if first and self.reduction_prev:
                x = cell_units.factorized_reduce(inputs, keras, c, "pre", self.sync_bn, False)
            else:
                x = cell_units.relu_conv_bn(inputs, keras, c, "pre", self.sync_bn, False)
            setattr(self, "pre0" if first else "pre1", keras.Model(inputs, x))
        size = s1_shape[1]
        out = -(-size // 2) if self.reduction else size
        part = c // self.partial
        for e, (_, source) in enumerate(self.edges):
            at = size if source < INPUT_NODES else out
            for op in self.edge_ops[e]:
                if not op.built:  # (shared ops: once)
                    op.build((None, at, at, part))
        if self.partial > 1 and self.reduction:
            self.bypass_pool = keras.layers.MaxPooling2D(2, 2, padding="same")
        if self.bottleneck > 1:
            inputs = keras.Input((out, out, self.nodes * c))
            self.expand = keras.Model(inputs, cell_units.relu_conv_bn(
                inputs, keras, self.nodes * self.channels, "expand", self.sync_bn, False))
        self.built = True

    def _edge(self, x: Any, e: int, weights: Any, chosen: Any, training: bool,
              outputs: dict[int, list[Any]]) -> Any:
        """Σ_o w_o·o(x) on the edge's part of the channels, or with `chosen` (the edge's
        one-hot row, zeros where the edge is not kept) the chosen op alone; the rest of the
        channels bypass (PC-DARTS). `outputs`: the ops' outputs computed so far, by op layers
        (shared ones run once)."""
        part = self.width // self.partial
        if chosen is not None and self.select == "switch":
            index = ops.where(ops.sum(chosen) > 0, ops.cast(ops.argmax(chosen), "int32"), _NONE)
            branches = [lambda y, op=op: op(y, training=training) for op in self.edge_ops[e]]
            mixed = ops.switch(index, branches, x[..., :part])
        else:
            key = id(self.edge_ops[e])
            if key not in outputs:
                outputs[key] = [op(x[..., :part], training=training)
                                for op in self.edge_ops[e]]
            w = weights if chosen is None else ops.cast(chosen, x.dtype)
            mixed = None
            for o, y in enumerate(outputs[key]):
                term = w[o] * y
                mixed = term if mixed is None else mixed + term
        if self.partial == 1:
            return mixed
        rest = x[..., part:]
        if mixed.shape[1] != x.shape[1]:
            rest = self.bypass_pool(rest)
        return channel_shuffle(ops.concatenate([mixed, rest], axis=-1), self.partial)

    def call(self, inputs: Sequence[Any], weights: Any, edge_weights: Any = None,
             chosen: Any = None, training: bool | None = None) -> Any:
        """`weights`: [edges, ops] op weights (softmax of α); `edge_weights`: [edges] (PC-DARTS'
        normalised β, or None); `chosen`: the derived cell's [edges, ops] one-hot, which makes
        this a derived cell (weights and edge weights unused)."""
        training = bool(training)
        states = [self.pre0(inputs[0], training=training),
                  self.pre1(inputs[1], training=training)]
        e, outputs = 0, {}
        for j in range(self.nodes):
            total = None
            for i in range(INPUT_NODES + j):
                term = self._edge(states[i], e, weights[e],
                                  None if chosen is None else chosen[e], training, outputs)
                if edge_weights is not None and chosen is None:
                    term = edge_weights[e] * term
                total = term if total is None else total + term
                e += 1
            states.append(total)
        out = ops.concatenate(states[INPUT_NODES:], axis=-1)
        return self.expand(out, training=training) if self.bottleneck > 1 else out

    def compute_output_shape(self, input_shape: Sequence[Sequence[int | None]]) -> tuple:
        size = input_shape[1][1]
        out = None if size is None else (-(-size // 2) if self.reduction else size)
        return (input_shape[1][0], out, out, self.nodes * self.channels)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(channels=self.channels, reduction=self.reduction,
                      reduction_prev=self.reduction_prev, nodes=self.nodes,
                      partial=self.partial, sync_bn=self.sync_bn, share=self.share,
                      bottleneck=self.bottleneck, select=self.select)
        return config


def check_widths(channels: int, partial: int, bottleneck: int) -> None:
    """Raises ValueError unless `channels` split by the bottleneck b into C/b channels that
    split in `partial` groups."""
    if bottleneck < 1 or partial < 1:
        raise ValueError(f"bottleneck and partial must be >= 1, got {bottleneck}, {partial}")
    if channels % (bottleneck * partial):
        raise ValueError(f"{channels} channels do not split by the channel bottleneck "
                         f"({bottleneck}) and then in {partial} partial groups")
