"""Standalone networks of DARTS cells (`tfnas.space.cells.CellArchitecture`; `tfnas.nets.build` calls `build` here), built from
standard Keras layers only, so they export to TFLite and time on the devices like every
tfnas network.

The structure is DARTS' evaluation network (Liu et al. 2019, `NetworkCIFAR` and
`NetworkImageNet` of its code): stem; cells whose two inputs are preprocessed to C channels
(1x1 ReLU-conv-BN, or a factorized reduce when the first input has twice the resolution);
intermediate nodes that sum their two edges; the output concatenating the `concat` nodes;
global average pooling and a linear classifier. Each edge's op is built by its family module
in `tfnas.blocks`, the module that also counts its params and FLOPs. With the auxiliary head
the model has two outputs (logits, auxiliary logits). Drop-path, a training-time
regulariser of DARTS' evaluation, is in the network built for training with `drop_path`
(`tfnas.nets.drop_path`: on every edge but the identities) and nowhere else: its layers have no
weights but their rate, so the trained weights load into the network built without them.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from tfnas.blocks import cell_family, cell_units
from tfnas.blocks.common import batch_norm, check_dropout, conv_bn, keras_module
from tfnas.space.cells import AUX_CHANNELS, CellArchitecture, CellPlan


def stem(inputs: Any, k: ModuleType, arch: CellArchitecture,
         sync_bn: bool = False) -> tuple[Any, Any]:
    """(s0, s1): the first cell's two inputs."""
    n = arch.network
    c = n.init_channels
    if n.stem == "cifar":
        x = conv_bn(inputs, k, n.stem_multiplier * c, 3, 1, "stem", relu=False, sync_bn=sync_bn)
        return x, x
    x = conv_bn(inputs, k, c // 2, 3, 2, "stem0a", sync_bn=sync_bn)
    s0 = conv_bn(x, k, c, 3, 2, "stem0b", relu=False, sync_bn=sync_bn)
    x = k.layers.ReLU(name="stem1_relu")(s0)
    return s0, conv_bn(x, k, c, 3, 2, "stem1", relu=False, sync_bn=sync_bn)


def cell(s0: Any, s1: Any, k: ModuleType, plan: CellPlan, name: str,
         sync_bn: bool = False, drop_path: bool = False) -> Any:
    """One cell of `plan` applied to its two inputs (`drop_path`: a DropPath layer after every
    edge but the identities, DARTS' training network)."""
    if plan.reduction_prev:
        s0 = cell_units.factorized_reduce(s0, k, plan.channels, f"{name}_pre0", sync_bn)
    else:
        s0 = cell_units.relu_conv_bn(s0, k, plan.channels, f"{name}_pre0", sync_bn)
    s1 = cell_units.relu_conv_bn(s1, k, plan.channels, f"{name}_pre1", sync_bn)
    states = [s0, s1]
    for node in range(plan.cell.nodes):
        branches = []
        for i in (2 * node, 2 * node + 1):
            sig = plan.edge(i)
            source = plan.cell.edges[i][1]
            y = cell_family(sig.op).build(states[source], k, sig, f"{name}_e{i}_{sig.op}",
                                          sync_bn)
            if drop_path and not (sig.op == "skip_connect" and sig.stride == 1):
                from tfnas.nets.drop_path import DropPath  # (Keras 3 only: training)

                y = DropPath(name=f"{name}_e{i}_drop_path")(y)
            branches.append(y)
        states.append(k.layers.Add(name=f"{name}_node{node + 2}")(branches))
    return k.layers.Concatenate(name=f"{name}_out")([states[i] for i in plan.cell.concat])


def auxiliary_head(x: Any, k: ModuleType, arch: CellArchitecture,
                   sync_bn: bool = False) -> Any:
    """DARTS' auxiliary classifier: ReLU, 5x5 average pooling to 2x2, 1x1 conv to 128, 2x2 conv
    to 768 (each with BN and ReLU), linear classifier."""
    a, b = AUX_CHANNELS
    x = k.layers.ReLU(name="aux_relu")(x)
    x = k.layers.AveragePooling2D(5, strides=arch.aux_pool_stride(), name="aux_pool")(x)
    x = conv_bn(x, k, a, 1, 1, "aux_conv1", sync_bn=sync_bn)
    x = k.layers.Conv2D(b, 2, use_bias=False, kernel_initializer="he_normal",
                        name="aux_conv2")(x)
    x = batch_norm(k, "aux_conv2_bn", sync_bn)(x)
    x = k.layers.ReLU(name="aux_conv2_relu")(x)
    x = k.layers.Flatten(name="aux_flatten")(x)
    return k.layers.Dense(arch.network.num_classes, name="aux_logits")(x)


def build(arch: CellArchitecture, *, dropout: float = 0.0, backend: str = "keras",
          name: str | None = None, sync_bn: bool = False, drop_path: bool = False) -> Any:
    """A functional model taking [B, H, W, C] float images and returning logits (and the
    auxiliary logits when the network has the auxiliary head); `drop_path`: the training
    network, with DropPath layers (rate 0 until the trainer sets it)."""
    check_dropout(dropout)
    k = keras_module(backend)
    n = arch.network
    inputs = k.Input((n.input_size, n.input_size, n.input_channels), name="image")
    s0, s1 = stem(inputs, k, arch, sync_bn)
    aux = None
    for plan in arch.plan():
        s0, s1 = s1, cell(s0, s1, k, plan, f"cell{plan.index:02d}", sync_bn, drop_path)
        if n.auxiliary and plan.index == n.reduction_cells[1]:
            aux = auxiliary_head(s1, k, arch, sync_bn)
    x = k.layers.GlobalAveragePooling2D(name="pool")(s1)
    if dropout > 0:
        x = k.layers.Dropout(dropout, name="dropout")(x)
    logits = k.layers.Dense(n.num_classes, name="logits")(x)
    outputs = logits if aux is None else [logits, aux]
    return k.Model(inputs, outputs, name=name or f"tfnas_{n.name}")
