"""The DARTS search network: the stacking of a `CellNetwork` with `SearchCell`s, one α (and
PC-DARTS β) for all normal cells and one for all reduction cells, and the genotype it derives.

DARTS (Liu et al. 2019), Sec. 2.4: a node keeps the two strongest incoming edges, an edge's
strength being its largest op weight other than `none`, and each kept edge its strongest op
other than `none`. PC-DARTS (Xu et al. 2020), Sec. 3.3: the strength is multiplied by the
edge's normalised β. The search network's cost as DCA-NAS prices it (its Eq. 3): each edge's
ops' params (or FLOPs) weighted by their softmax, for the evaluation network
(`expected_cost`), differentiable in α.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tfnas.blocks.common import batch_norm
from tfnas.space.cells import (CELL_OPS, INPUT_NODES, Cell, CellArchitecture, CellNetwork,
                               Genotype)
from tfnas.search.layers.cell import SearchCell, edge_count, edge_sources

KINDS = ("normal", "reduce")


@keras.saving.register_keras_serializable(package="tfnas")
class CellSupernet(keras.Model):
    """The search network of `network` (e.g. `darts_search`): stem, cells, pooling, linear
    classifier; `partial` is PC-DARTS' K (1: DARTS) and `edge_normalization` its β."""

    def __init__(self, network: CellNetwork | dict, nodes: int = 4, partial: int = 1,
                 edge_normalization: bool = False, sync_bn: bool = False,
                 seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.network = (network if isinstance(network, CellNetwork)
                        else CellNetwork.from_dict(network))
        self.nodes, self.partial = int(nodes), int(partial)
        self.edge_normalization, self.sync_bn = bool(edge_normalization), bool(sync_bn)
        self.seed = int(seed)
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
                                         self.sync_bn, name=f"cell{i:02d}"))
            reduction_prev = reduction
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.classifier = keras.layers.Dense(n.num_classes, name="logits")

    def weights_of(self, kind: str) -> tuple[Any, Any]:
        """(op weights softmax(α) [edges, ops], edge weights or None) of the `kind` cells."""
        weights = ops.softmax(self.alphas[kind], axis=-1)
        if not self.edge_normalization:
            return weights, None
        parts, start = [], 0
        for j in range(self.nodes):  # β normalised over the edges into each node (Eq. 4)
            end = start + INPUT_NODES + j
            parts.append(ops.softmax(self.betas[kind][start:end]))
            start = end
        return weights, ops.concatenate(parts)

    def call(self, images: Any, training: bool | None = None) -> Any:
        x = self.stem_bn(self.stem(images), training=training)
        s0 = s1 = x
        mixed = {kind: self.weights_of(kind) for kind in KINDS}
        for cell in self.cells:
            w, b = mixed["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, cell([s0, s1], w, b, training=training)
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

    def expected_cost(self, cost: str = "params") -> Any:
        """The evaluation network's params (or FLOPs) with each edge's ops weighted by their
        softmax (DCA-NAS Eq. 3): the fixed parts plus Σ_edges Σ_ops w·cost(op), summed over
        the cells of each kind; differentiable in α."""
        return soft_cost(self.network, {k: self.weights_of(k)[0] for k in KINDS}, cost,
                         self.nodes)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(network=self.network.to_dict(), nodes=self.nodes, partial=self.partial,
                      edge_normalization=self.edge_normalization, sync_bn=self.sync_bn,
                      seed=self.seed)
        return config


def derive_cell(weights: Any, edge_weights: Any, nodes: int) -> Cell:
    """The derived cell of [edges, ops] op weights (and [edges] edge weights, or None)."""
    none = CELL_OPS.index("none")
    chosen: list[tuple[str, int]] = []
    sources = edge_sources(nodes)
    for j in range(nodes):
        node = INPUT_NODES + j
        rows = [e for e, (n, _) in enumerate(sources) if n == node]
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


def soft_cost(network: CellNetwork, weights: dict[str, Any], cost: str, nodes: int) -> Any:
    """DCA-NAS' k_s(α) for the evaluation `network` (see `CellSupernet.expected_cost`)."""
    def of(thing: Any) -> int:
        return thing.params() if cost == "params" else thing.flops()

    # channels and sizes do not depend on the ops: any cell of `nodes` nodes plans them
    placeholder = Cell(tuple(("skip_connect", i) for _ in range(nodes) for i in (0, 1)),
                       tuple(range(INPUT_NODES, INPUT_NODES + nodes)))
    arch = CellArchitecture(network, Genotype(placeholder, placeholder))
    fixed = of(arch)  # stem, preprocessing, classifier: the parts no op changes
    total = 0.0
    for plan in arch.plan():
        fixed -= sum(of(plan.edge(e)) for e in range(len(plan.cell.edges)))
        table = [[0.0 if op == "none" else float(of(plan.signature(op, source)))
                  for op in CELL_OPS] for _, source in edge_sources(nodes)]
        kind = "reduce" if plan.reduction else "normal"
        total = total + ops.sum(weights[kind] * ops.convert_to_tensor(table, "float32"))
    return total + float(fixed)
