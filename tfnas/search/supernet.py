"""Supernets: the searchable network of a space, its expected cost, and derive() → Architecture.

`build(space, method=...)` makes a functional Keras model: the fixed stem and head of
`tfnas.nets` around one searchable layer per position of the space: the Single-Path
superkernel MBConv (`superkernel`), or a multi-path `MixedOp` (`softmax`, `gumbel` (hard,
LightNAS), `gumbel_soft` (FBNet), `proxyless`; `tfnas.search.layers.mixed`).
`expected_cost(model, cost_model)` = fixed + Σ layer.expected_cost(rows) is differentiable in
the architecture parameters and independent of the batch (docs/design.md, rule 3); call it under
the same GradientTape as the forward pass. `derive(model, space)` reads each layer's decision.

Cell methods (`darts`, `pc_darts`, `dca_nas`) build the DARTS search network instead
(`tfnas.search.cell_supernet.CellSupernet`, α shared by the cells of a kind); the functions
here answer for it too, so the search loop does not ask which kind of network it trains.
"""

from __future__ import annotations

from typing import Any

import keras

from tfnas.search import methods
from tfnas import nets
from tfnas.blocks import common
from tfnas.costs import CostModel
from tfnas.errors import TfnasError
from tfnas.latency.predictor import LatencyPredictor
from tfnas.search.cell_supernet import CellSupernet
from tfnas.search.layers.mixed import MixedOp
from tfnas.search.layers.searchable import SearchableLayer
from tfnas.search.layers.superkernel import SuperkernelMBConv
from tfnas.space import SKIP, Architecture, SearchSpace


def build(space: SearchSpace, *, method: str = "superkernel", dropout: float = 0.2,
          drop_rate: float = 0.0, threshold_init: float = 0.0, seed: int | None = None,
          sync_bn: bool = False, temperature: float = 5.0, select: str | None = None,
          nodes: int = 4, bottleneck: int | None = None,
          derived_cells: bool | None = None, latency_samples: int = 20,
          latency_noise: float = 0.0) -> Any:
    """The supernet of `space` for a search method (`sync_bn`: cross-replica batch norm;
    `temperature`: initial Gumbel τ; `select`: how mixed ops (and derived cells) run one path,
    see `MixedOp` (None: gather for mixed ops, switch for cells); cell methods: `nodes` intermediate nodes per cell, DCA-NAS' channel
    `bottleneck` and `derived_cells`, None for the method's own; a latency predictor's
    `latency_samples` and `latency_noise`, `CellSupernet`)."""
    record = methods.get(method)
    record.check_space(space)
    common.check_dropout(dropout)
    if record.layer == "cell":  # DARTS' search network has no dropout
        bottleneck = record.check_widths(space, bottleneck)
        model = CellSupernet(space, nodes=nodes, partial=record.partial,
                             edge_normalization=record.edge_normalization,
                             share_weights=record.share_weights, sync_bn=sync_bn,
                             bottleneck=bottleneck, select=select or "switch",
                             derived_cells=(record.derived_cells if derived_cells is None
                                            else derived_cells),
                             latency_samples=latency_samples, latency_noise=latency_noise,
                             seed=seed or 0, name=f"supernet_{space.name}")
        model(keras.ops.zeros((1, space.input_size, space.input_size, space.input_channels)),
              training=False)  # (a subclassed model's variables exist once it is called)
        return model
    inputs = nets.image_input(keras, space)
    x = nets.stem(inputs, keras, space, sync_bn)
    for i, spec in enumerate(space.layers):
        if record.layer == "mixed":
            x = MixedOp(spec.c_out, spec.stride, [op.name for op in space.candidates(i)],
                        mode=record.mode, hard=record.hard, temperature=temperature,
                        seed=None if seed is None else seed + i, sync_bn=sync_bn,
                        select=select or "gather", name=f"layer{i:02d}")(x)
            continue
        x = SuperkernelMBConv(
            spec.c_out, spec.stride, kernels=space.kernels, expansions=space.expansions,
            allow_skip=SKIP in space.candidates(i), threshold_init=threshold_init,
            drop_rate=drop_rate, seed=None if seed is None else seed + i, sync_bn=sync_bn,
            name=f"layer{i:02d}")(x)
    outputs = nets.head(x, keras, space, dropout, sync_bn)
    return keras.Model(inputs, outputs, name=f"supernet_{space.name}")


SEARCHABLE = (SuperkernelMBConv, MixedOp)  # the SearchableLayer implementations


def searchable_layers(model: Any) -> list[SearchableLayer]:
    return [layer for layer in model.layers if isinstance(layer, SEARCHABLE)]


def soft_one_hot(model: Any, space: SearchSpace, view: str = "loss") -> Any:
    """L x K op probabilities of the supernet (columns in `space.ops` order) under `view`
    (`tfnas.search.layers.searchable`): the relaxed one-hot a latency predictor reads."""
    rows = []
    for layer in searchable_layers(model):
        probs = layer.op_probabilities(view)
        rows.append(keras.ops.stack([keras.ops.cast(probs.get(op, 0.0), "float32")
                                     for op in space.ops]))
    return keras.ops.stack(rows)


def expected_cost(model: Any, cost_model: CostModel | LatencyPredictor,
                  view: str = "loss") -> Any:
    """Fixed cost plus every searchable layer's expected cost (Eq. 11-12), or the latency
    predictor's output for the relaxed one-hot of the supernet (LightNAS), under `view`
    (`tfnas.search.layers.searchable`: `loss` what the method prices, `decided` the network
    `derive` returns now with the relaxation's gradient, `sampled` the network the last
    forward pass ran)."""
    if isinstance(model, CellSupernet):
        return model.expected_cost(cost_model, view)
    if isinstance(cost_model, LatencyPredictor):
        return cost_model.soft_cost(soft_one_hot(model, cost_model.space, view))
    layers = searchable_layers(model)
    if len(layers) != len(cost_model.layers):
        raise TfnasError(f"cost model has {len(cost_model.layers)} layers, supernet has "
                         f"{len(layers)}")
    total = cost_model.fixed
    for layer, rows in zip(layers, cost_model.layers):
        total = total + layer.expected_cost(rows, view)
    return total


def op_scores(model: Any) -> Any:
    """Per searchable layer, log P(op) under the search's relaxation (for `budget.solve`); of
    a cell network, per kind the [edges, ops] log-weights its derivation ranks by."""
    if isinstance(model, CellSupernet):
        return model.op_scores()
    return [layer.op_scores() for layer in searchable_layers(model)]


def rescale_proxyless_alpha(model: Any, old_alphas: list[Any]) -> None:
    """ProxylessNAS Sec. 3.2.1: after an architecture step, every proxyless layer rescales
    its sampled pair's α so that the unsampled paths keep their probabilities."""
    for layer, old in zip(searchable_layers(model), old_alphas):
        layer.rescale_alpha(old)


def sampled_log_probability(model: Any) -> Any:
    """Σ over layers of log p(path the last forward pass opened) (REINFORCE, ProxylessNAS
    Eq. 8)."""
    return sum(layer.sampled_log_probability() for layer in searchable_layers(model))


def architecture_variables(model: Any) -> list[Any]:
    """The thresholds (Single-Path's architecture parameters) or the α of mixed ops (the α
    and β of a cell network)."""
    if isinstance(model, CellSupernet):
        return list(model.architecture_variables)
    return [v for layer in searchable_layers(model) for v in layer.architecture_variables]


def anneal(model: Any, temperature: float, drop_rate: float) -> None:
    """The epoch's schedules for every searchable layer: Gumbel-softmax temperature (mixed
    ops) and kernel-subset drop rate (the superkernel; 0 ends it)."""
    for layer in searchable_layers(model):
        layer.anneal(temperature, drop_rate)


def derive(model: Any, space: Any) -> Any:
    """The architecture the supernet's hard decisions currently select (of a cell network:
    its genotype in `space`, the network the derived cells are built in)."""
    if isinstance(model, CellSupernet):
        from tfnas.space.cells import CellArchitecture

        return CellArchitecture(space, model.derive())
    return Architecture(space, tuple(layer.decisions() for layer in searchable_layers(model)))
