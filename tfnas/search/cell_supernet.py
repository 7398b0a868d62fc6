"""The DARTS search network: the stacking of a `CellNetwork` with `SearchCell`s, one α (and
PC-DARTS β) for all normal cells and one for all reduction cells, and the genotype it derives.

DARTS (Liu et al. 2019), Sec. 2.4: a node keeps the two strongest incoming edges, an edge's
strength being its largest op weight other than `none`, and each kept edge its strongest op
other than `none`. PC-DARTS (Xu et al. 2020), Sec. 3.3: the strength is multiplied by the
edge's normalised β. The search network's cost as DCA-NAS prices it (its Eq. 3): each edge's
ops' params (or FLOPs) weighted by their softmax, for the evaluation network
(`expected_cost`), differentiable in α. DCA-NAS' search-time reductions (Dutta et al. 2022,
Sec. 3.4): ops shared by the edges leaving a node, the channel bottleneck (`SearchCell`), and
derived cells: only the first cell of each kind mixes its ops by α, the others are the cells
`derive` returns, recomputed from α at every step (`derived_one_hot`), each kept edge running
its one op; α learns from the mixed cells alone.

Latency, LA-DARTS (Xu et al. 2020): a network's latency depends on the wiring of its cells, so
it is predicted by an MLP on the encoding of derived cells (`tfnas.latency.predictor`, the
latency prediction module), and the search prices α by the mean prediction over
`latency_samples` sub-networks sampled from it (Eq. 2, M = 20): per node two edges drawn by
strength without replacement (Gumbel top-2), on each an op other than `none` drawn from its
softmax, the gradient through the relaxed one-hot (Gumbel-softmax, straight through).
`latency_samples=0` prices the cells `derive` returns now instead (LightNAS' hard variant, its
gradient straight through the kept ops' softmax). `latency_noise` multiplies the prediction by
1 + σ·N(0, 1) at every step: LA-DARTS' test of how much a noisy predictor moves the search.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from tfnas.blocks.common import batch_norm
from tfnas.run import checkpoints
from tfnas.costs import CELL_KINDS as KINDS, CellCost
from tfnas.space.cells import (CELL_OPS, INPUT_NODES, Cell, CellNetwork, Genotype, edge_count,
                               edge_sources, node_edges)
from tfnas.search.layers.cell import SearchCell

# what each view of `tfnas.search.layers.searchable` prices: the softmax-weighted cells, or
# the cells `derive` returns now (with the relaxation's gradient)
_SOFT_VIEWS = ("loss", "relaxed")


@keras.saving.register_keras_serializable(package="tfnas")
class CellSupernet(keras.Model):
    """The search network of `network` (e.g. `darts_search`): stem, cells, pooling, linear
    classifier; `partial` is PC-DARTS' K (1: DARTS) and `edge_normalization` its β;
    `share_weights`, `bottleneck`, `derived_cells`: DCA-NAS' ops shared by the edges leaving
    a node, channel bottleneck b, derived cells (see the module docstring); `select`: how
    derived cells run their ops (`SearchCell`)."""

    def __init__(self, network: CellNetwork | dict, nodes: int = 4, partial: int = 1,
                 edge_normalization: bool = False, sync_bn: bool = False,
                 seed: int = 0, share_weights: bool = False, bottleneck: int = 1,
                 derived_cells: bool = False, select: str = "switch", latency_samples: int = 20,
                 latency_noise: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network = (network if isinstance(network, CellNetwork)
                        else CellNetwork.from_dict(network))
        self.nodes, self.partial = int(nodes), int(partial)
        self.edge_normalization, self.sync_bn = bool(edge_normalization), bool(sync_bn)
        self.seed, self.share_weights = int(seed), bool(share_weights)
        self.bottleneck, self.derived_cells, self.select = (int(bottleneck), bool(derived_cells),
                                                             select)
        self.latency_samples, self.latency_noise = int(latency_samples), float(latency_noise)
        self.latency_seed = keras.random.SeedGenerator(self.seed + 1)
        n = self.network
        edges = edge_count(self.nodes)
        init = keras.initializers.RandomNormal(stddev=1e-3, seed=self.seed)  # DARTS: 1e-3·N(0,1)
        self.alphas = {kind: self.add_weight(shape=(edges, len(CELL_OPS)), initializer=init,
                                             name=f"alpha_{kind}") for kind in KINDS}
        self.betas = ({kind: self.add_weight(shape=(edges,), initializer=init,
                                             name=f"beta_{kind}") for kind in KINDS}
                      if self.edge_normalization else {})
        c0 = n.stem_multiplier * n.init_channels
        self.stem = keras.layers.Conv2D(c0, 3, padding="same", use_bias=False,
                                        kernel_initializer="he_normal", name="stem")
        self.stem_bn = batch_norm(keras, "stem_bn", self.sync_bn)
        self.cells = []
        c, reduction_prev = n.init_channels, False
        for i in range(n.cells):
            reduction = i in n.reduction_cells
            c = 2 * c if reduction else c
            self.cells.append(SearchCell(c, reduction, reduction_prev, self.nodes, self.partial,
                                         self.sync_bn, self.share_weights, self.bottleneck,
                                         self.select, name=f"cell{i:02d}"))
            reduction_prev = reduction
        checkpoints.track_children(self, "cells", self.cells)
        checkpoints.track_children(self, "arch", {f"alpha_{k}": v for k, v in self.alphas.items()})
        checkpoints.track_children(self, "arch", {f"beta_{k}": v for k, v in self.betas.items()})
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.classifier = keras.layers.Dense(n.num_classes, name="logits")

    def weights_of(self, kind: str) -> tuple[Any, Any]:
        """(op weights softmax(α) [edges, ops], edge weights or None) of the `kind` cells."""
        weights = ops.softmax(self.alphas[kind], axis=-1)
        if not self.edge_normalization:
            return weights, None
        # β normalised over the edges into each node (Eq. 4)
        return weights, ops.concatenate([ops.softmax(self.betas[kind][rows.start:rows.stop])
                                         for rows in node_edges(self.nodes)])

    def call(self, images: Any, training: bool | None = None) -> Any:
        x = self.stem_bn(self.stem(images), training=training)
        s0 = s1 = x
        mixed = {kind: self.weights_of(kind) for kind in KINDS}
        chosen = ({kind: derived_one_hot(*mixed[kind], self.nodes) for kind in KINDS}
                  if self.derived_cells else {})
        seen = set()
        for cell in self.cells:
            kind = "reduce" if cell.reduction else "normal"
            w, b = mixed[kind]
            derived = chosen.get(kind) if kind in seen else None  # the first mixes by α
            seen.add(kind)
            s0, s1 = s1, cell([s0, s1], w, b, derived, training=training)
        return self.classifier(self.pool(s1))

    @property
    def architecture_variables(self) -> list[Any]:
        return [*self.alphas.values(), *self.betas.values()]

    def derive(self) -> Genotype:
        """The genotype the current α (and β) give (see the module docstring)."""
        cells = {}
        for kind in KINDS:
            weights, edge_weights = self.weights_of(kind)
            w = ops.convert_to_numpy(weights)
            b = None if edge_weights is None else ops.convert_to_numpy(edge_weights)
            cells[kind] = derive_cell(w, b, self.nodes)
        return Genotype(cells["normal"], cells["reduce"])

    def expected_cost(self, cost: Any, view: str = "loss") -> Any:
        """The cost (a latency predictor: `expected_latency`) of the cells under `view`: of the cells under `view`: `loss` (and `relaxed`) DCA-NAS' k_s(α), its
        Eq. 3: the fixed parts plus Σ_edges Σ_ops softmax(α)·cost(op), summed over the cells of
        each kind; `decided` (and `sampled`) the exact cost of the cells `derive` returns now,
        with the gradient of the softmax of the ops it keeps (straight through: the budget
        prices what the search would return, and still moves α)."""
        if not isinstance(cost, CellCost):
            return self.expected_latency(cost)
        total = ops.convert_to_tensor(cost.fixed, "float32")
        for k, kind in enumerate(KINDS):
            weights, edge_weights = self.weights_of(kind)
            if view not in _SOFT_VIEWS:
                weights = _straight_through(derived_one_hot(weights, edge_weights, self.nodes),
                                            weights)
            total = total + ops.sum(weights * ops.convert_to_tensor(cost.tables[k], "float32"))
        return total

    def expected_latency(self, predictor: Any) -> Any:
        """The predictor's latency of the cells (see the module docstring): the mean over
        `latency_samples` sampled networks (LA-DARTS Eq. 2), or of the derived cells with
        `latency_samples=0`; the reduction cell is encoded when the predictor reads it."""
        codes = []
        for kind in KINDS[:2 if predictor.reduce_cell else 1]:
            weights, edge_weights = self.weights_of(kind)
            if self.latency_samples:
                codes.append(sampled_one_hots(weights, edge_weights, self.nodes,
                                              self.latency_samples, self.latency_seed))
            else:
                codes.append(ops.expand_dims(_straight_through(
                    derived_one_hot(weights, edge_weights, self.nodes), weights), 0))
        latency = ops.mean(predictor.soft_costs(ops.concatenate(codes, axis=1)))
        if self.latency_noise:
            noise = keras.random.normal((), seed=self.latency_seed)
            latency = latency * (1.0 + self.latency_noise * ops.stop_gradient(noise))
        return latency

    def op_scores(self) -> dict[str, Any]:
        """Per kind, the [edges, ops] log-weights the derivation ranks by: log of the op's
        softmax weight, times the edge's normalised β (PC-DARTS), as numpy."""
        scores = {}
        for kind in KINDS:
            weights, edge_weights = self.weights_of(kind)
            w = ops.convert_to_numpy(weights).astype("float64")
            if edge_weights is not None:
                w = w * ops.convert_to_numpy(edge_weights)[:, None]
            scores[kind] = np.log(np.maximum(w, 1e-30))
        return scores

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(network=self.network.to_dict(), nodes=self.nodes, partial=self.partial,
                      edge_normalization=self.edge_normalization, sync_bn=self.sync_bn,
                      seed=self.seed, share_weights=self.share_weights,
                      bottleneck=self.bottleneck, derived_cells=self.derived_cells,
                      select=self.select, latency_samples=self.latency_samples,
                      latency_noise=self.latency_noise)
        return config


def derive_cell(weights: Any, edge_weights: Any, nodes: int) -> Cell:
    """The derived cell of [edges, ops] op weights (and [edges] edge weights, or None)."""
    none = CELL_OPS.index("none")
    chosen: list[tuple[str, int]] = []
    sources = edge_sources(nodes)
    for rows in node_edges(nodes):
        best = []
        for e in rows:
            strengths = [(float(weights[e][o]), o) for o in range(len(CELL_OPS)) if o != none]
            strength, op = max(strengths)
            if edge_weights is not None:
                strength *= float(edge_weights[e])
            best.append((strength, sources[e][1], op))
        best.sort(key=lambda t: (-t[0], t[1]))
        for _, source, op in sorted(best[:2], key=lambda t: t[1]):
            chosen.append((CELL_OPS[op], source))
    return Cell(tuple(chosen), tuple(range(INPUT_NODES, INPUT_NODES + nodes)))


def _straight_through(kept: Any, weights: Any) -> Any:
    """The one-hot `kept` as value, with the gradient of the kept rows' op weights."""
    return kept + ops.sum(kept, -1, keepdims=True) * (weights - ops.stop_gradient(weights))


def _not_none() -> Any:
    """[ops] 0 for `none`, 1 for every other op."""
    return ops.convert_to_tensor([0.0 if op == "none" else 1.0 for op in CELL_OPS])


def _strength(weights: Any, edge_weights: Any) -> Any:
    """Each edge's strength as DARTS derives (Sec. 2.4): its largest op weight other than
    `none`, times its normalised β (PC-DARTS) when there is one."""
    strength = ops.max(weights * _not_none(), axis=-1)
    return strength if edge_weights is None else strength * edge_weights


def _two_per_node(scores: Any, nodes: int) -> Any:
    """[..., edges] 1 on the two highest-scoring edges into each node, 0 elsewhere."""
    kept = []
    for rows in node_edges(nodes):
        top = ops.top_k(scores[..., rows.start:rows.stop], 2)[1]
        kept.append(ops.sum(ops.one_hot(top, len(rows)), axis=-2))
    return ops.concatenate(kept, axis=-1)


def derived_one_hot(weights: Any, edge_weights: Any, nodes: int) -> Any:
    """[edges, ops] one-hot of `derive_cell`'s choice, as a tensor (in the compiled step): per
    node the two strongest edges (ties: the earlier source), on each its strongest op other than
    `none`."""
    masked = weights * _not_none()  # weights are positive: `none` never wins
    best_op = ops.one_hot(ops.argmax(masked, axis=-1), len(CELL_OPS))
    kept = _two_per_node(_strength(weights, edge_weights), nodes)
    return ops.stop_gradient(best_op * kept[:, None])


def sampled_one_hots(weights: Any, edge_weights: Any, nodes: int, samples: int,
                     seed: Any) -> Any:
    """[samples, edges, ops] one-hots of derived cells sampled from the [edges, ops] op
    weights (LA-DARTS Eq. 2): per node two edges drawn without replacement with probability
    by strength (the derivation's: largest op weight other than `none`, times the edge
    weight), by Gumbel top-2; on each an op other than `none` drawn from the op weights, as a
    straight-through Gumbel-softmax (value one-hot, gradient of softmax(log w + g))."""
    n_edges, n_ops = int(weights.shape[0]), len(CELL_OPS)

    def gumbel(shape: tuple[int, ...]) -> Any:
        u = keras.random.uniform(shape, minval=1e-6, maxval=1.0 - 1e-6, seed=seed)
        return -ops.log(-ops.log(u))

    logits = ops.log(ops.maximum(weights, 1e-30)) + (_not_none() - 1.0) * 1e9  # never `none`
    perturbed = logits[None] + gumbel((samples, n_edges, n_ops))
    soft = ops.softmax(perturbed, axis=-1)
    hard = ops.one_hot(ops.argmax(perturbed, axis=-1), n_ops)
    chosen = hard + soft - ops.stop_gradient(soft)
    strength = _strength(weights, edge_weights)
    drawn = ops.log(ops.maximum(strength, 1e-30))[None] + gumbel((samples, n_edges))
    return ops.stop_gradient(_two_per_node(drawn, nodes))[..., None] * chosen
