"""The Single-Path NAS superkernel: one MBConv whose kernel size and expansion are searched.

Stamoulis et al., "Single-Path NAS: Designing Hardware-Efficient ConvNets in less than 4
Hours" (2019). The depthwise kernel of the largest candidate holds every smaller one: its
centre k x k window is the k x k kernel (3x3 ⊂ 5x5 ⊂ 7x7), and its first C_in·e channels are the
expansion-e layer (e=3 ⊂ e=6). Whether an outer ring or channel group is used is decided by
comparing its group-Lasso norm with a trainable threshold:

    Eq. 2   w_k = w_3x3 + 1(‖w_5x5\\3x3‖² > t_k5)
                      · (w_5x5\\3x3 + 1(‖w_7x7\\5x5‖² > t_k7) · w_7x7\\5x5)
    Eq. 3   w   = 1(‖w_k,3‖² > t_e3) · (w_k,3 + 1(‖w_k,6\\3‖² > t_e6) · w_k,6\\3)

1(·) is the hard indicator in the forward pass and σ(‖·‖² − t) in the backward pass (the
paper's sigmoid relaxation; straight-through). Norms are mean squares (‖·‖² / #weights) so
they do not grow with the channel count and the sigmoid stays in its responsive range.

The first channel group's indicator (t_e3) exists only where the layer may be skipped, and it
gates the layer's whole output: y = x + 1(e3)·MBConv(x). Inside, only the outer groups are
masked (by their own indicators, after the depthwise BN/ReLU, as rows of the projection's
kernel), so a decided layer computes exactly the standalone MBConv of its choice. A skipped layer still computes its e=3 branch, so
t_e3 gets the straight-through gradient ⟨∂L/∂y, MBConv_e3(x)⟩·σ' from the loss and a layer
can come back. (Masking the e=3 channels with the skip indicator too, as Eq. 3 reads, zeroes
the branch before the projection: the gradient is then ⟨∂L/∂y, β of the projection's BN⟩,
exactly 0 at initialisation and independent of the MBConv's weights, and a skipped layer
never returns.)

The layer's runtime (Eq. 11-12) is the expectation of the table rows R(k, e) under the same
indicators: `expected_cost(table)`; with hard indicators it is the row of the decided op.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import keras
import numpy as np
from keras import ops

from tfnas.blocks.common import BN_EPSILON, BN_MOMENTUM, depthwise_initializer
from tfnas.search.layers.searchable import check_view
from tfnas.space import SKIP, Op


def indicator(norm: Any, threshold: Any) -> Any:
    """1(norm > threshold) forward, d/dx σ(norm − threshold) backward (straight-through)."""
    soft = ops.sigmoid(norm - threshold)
    hard = ops.cast(ops.greater(norm, threshold), soft.dtype)
    return soft + ops.stop_gradient(hard - soft)


class _Indicators(NamedTuple):
    """A superkernel's decisions: nested ring indicators (ring r counts only if the inner ones
    do), nested channel-group indicators, each group's own indicator (1 for a first group that
    cannot be skipped), the effective kernel w_k, and the norms compared with thresholds."""

    rings: list[Any]
    groups: list[Any]
    own: list[Any]
    kernel: Any
    ring_norms: list[Any]
    group_norms: list[Any]


def _ring_masks(kernels: Sequence[int]) -> np.ndarray:
    """[len(kernels), K, K] masks: the centre kernels[0] window, then each outer ring."""
    big = max(kernels)
    masks, previous = [], np.zeros((big, big), np.float32)
    for k in sorted(kernels):
        window = np.zeros((big, big), np.float32)
        lo = (big - k) // 2
        window[lo:lo + k, lo:lo + k] = 1.0
        masks.append(window - previous)
        previous = window
    return np.stack(masks)


@keras.saving.register_keras_serializable(package="tfnas")
class SuperkernelMBConv(keras.layers.Layer):
    """Searchable MBConv: 1x1 expand, superkernel depthwise, 1x1 project (Single-Path NAS).

    Args:
        c_out: output channels.
        stride: depthwise stride.
        kernels: candidate kernel sizes, nested (e.g. (3, 5)).
        expansions: candidate expansion ratios, nested (e.g. (3, 6)).
        allow_skip: whether the layer may become the identity (needs stride 1, c_in == c_out).
        threshold_init: initial value of every threshold (0: all groups start on).
        drop_rate: probability of dropping each optional group during training (Sec. 4.2:
            lets the nested sub-kernels train on their own during the first epochs); held in
            the non-trainable weight `drop_rate_var`, which the search sets to 0 later.
        sync_bn: batch norm statistics synchronised across replicas (as on TPU pods).
    """

    def __init__(self, c_out: int, stride: int = 1, kernels: Sequence[int] = (3, 5),
                 expansions: Sequence[int] = (3, 6), allow_skip: bool = False,
                 threshold_init: float = 0.0, drop_rate: float = 0.0, seed: int | None = None,
                 sync_bn: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.c_out = int(c_out)
        self.stride = int(stride)
        self.kernels = tuple(sorted(int(k) for k in kernels))
        self.expansions = tuple(sorted(int(e) for e in expansions))
        self.allow_skip = bool(allow_skip)
        self.threshold_init = float(threshold_init)
        self.drop_rate = float(drop_rate)
        self.seed = seed
        self.sync_bn = bool(sync_bn)
        self.seed_generator = keras.random.SeedGenerator(seed)

    # --- weights --------------------------------------------------------------------------

    def build(self, input_shape: Sequence[int | None]) -> None:
        self.c_in = int(input_shape[-1])
        if self.allow_skip and (self.stride != 1 or self.c_in != self.c_out):
            raise ValueError("allow_skip needs stride 1 and c_in == c_out")
        self.c_mid = self.c_in * self.expansions[-1]
        self.expand = None
        if self.expansions != (1,):
            self.expand = keras.layers.Conv2D(self.c_mid, 1, use_bias=False,
                                              kernel_initializer="he_normal", name="expand")
            self.expand_bn = keras.layers.BatchNormalization(
                momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=self.sync_bn,
                name="expand_bn")
            self.expand.build(input_shape)
            self.expand_bn.build((*input_shape[:-1], self.c_mid))
        k = self.kernels[-1]
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=(k, k, self.c_mid, 1),
            initializer=depthwise_initializer(keras))
        self.dw_bn = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                                                     synchronized=self.sync_bn, name="dw_bn")
        self.dw_bn.build((*input_shape[:-1], self.c_mid))
        self.project = keras.layers.Conv2D(self.c_out, 1, use_bias=False,
                                           kernel_initializer="he_normal", name="project")
        self.project.build((*input_shape[:-1], self.c_mid))
        self.project_bn = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=BN_EPSILON, synchronized=self.sync_bn,
            name="project_bn")
        self.project_bn.build((*input_shape[:-1], self.c_out))
        init = keras.initializers.Constant(self.threshold_init)
        # one threshold per outer kernel ring, and per channel group (the first only if skippable)
        self.kernel_thresholds = self.add_weight(
            name="kernel_thresholds", shape=(len(self.kernels) - 1,), initializer=init)
        self.expansion_thresholds = self.add_weight(
            name="expansion_thresholds", initializer=init,
            shape=(len(self.expansions) - (0 if self.allow_skip else 1),))
        # a variable, so the search can end kernel-subset dropout without retracing its step
        self.drop_rate_var = self.add_weight(
            name="drop_rate", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.drop_rate))
        bounds = [0] + [self.c_in * e for e in self.expansions]
        self._groups = [(bounds[j], bounds[j + 1]) for j in range(len(self.expansions))]
        self._rings = _ring_masks(self.kernels)
        self.built = True

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    # --- indicators (Eq. 2-3) -------------------------------------------------------------

    def indicators(self, training: bool = False) -> tuple[list[Any], list[Any], Any]:
        """(nested ring indicators, nested channel-group indicators, effective kernel)."""
        state = self._evaluate(training)
        return state.rings, state.groups, state.kernel

    def norms(self) -> tuple[np.ndarray, np.ndarray]:
        """Current mean-square norms of the outer rings and of the searchable channel groups,
        in threshold order (what `kernel_thresholds` / `expansion_thresholds` compare with)."""
        state = self._evaluate(False)
        return (np.array([float(n) for n in state.ring_norms], np.float32),
                np.array([float(n) for n in state.group_norms], np.float32))

    def _evaluate(self, training: bool, relaxed: bool = False) -> "_Indicators":
        """Indicators, effective kernel and norms; `relaxed`: σ(norm − t) in place of the
        hard indicators (the relaxation's probabilities, for scoring ops)."""
        gate = (lambda n, t: ops.sigmoid(n - t)) if relaxed else indicator
        # decisions in float32 whatever the compute dtype: bfloat16 would round norms and
        # thresholds to 3 significant digits
        w = ops.cast(self.depthwise_kernel, "float32")
        t_kernel = ops.cast(self.kernel_thresholds, "float32")
        t_expansion = ops.cast(self.expansion_thresholds, "float32")
        rings = ops.convert_to_tensor(self._rings)[:, :, :, None, None]
        ring_ind: list[Any] = []
        ring_norms: list[Any] = []
        w_k = w * rings[0]
        on = None
        for r in range(1, len(self.kernels)):  # Eq. 2
            part = w * rings[r]
            norm = ops.sum(ops.square(part)) / (float(self._rings[r].sum()) * self.c_mid)
            ind = self._maybe_drop(gate(norm, t_kernel[r - 1]), training)
            on = ind if on is None else on * ind  # a ring counts only if all inner rings do
            ring_ind.append(on)
            ring_norms.append(norm)
            w_k = w_k + on * part
        # taps of the decided kernel, to take mean squares over the weights in use
        area = float(self._rings[0].sum())
        for r, ind in enumerate(ring_ind, start=1):
            area = area + ops.stop_gradient(ind) * float(self._rings[r].sum())
        group_ind: list[Any] = []
        own: list[Any] = []
        group_norms: list[Any] = []
        on = ops.ones((), w.dtype)
        for j, (lo, hi) in enumerate(self._groups):  # Eq. 3
            if j == 0 and not self.allow_skip:
                group_ind.append(on)
                own.append(on)
                continue
            norm = ops.sum(ops.square(w_k[:, :, lo:hi, :])) / (area * (hi - lo))
            t = t_expansion[j if self.allow_skip else j - 1]
            own.append(self._maybe_drop(gate(norm, t), training))
            on = on * own[-1]
            group_ind.append(on)
            group_norms.append(norm)
        return _Indicators(ring_ind, group_ind, own, w_k, ring_norms, group_norms)

    def _maybe_drop(self, ind: Any, training: bool) -> Any:
        if not training:
            return ind
        draw = keras.random.uniform((), seed=self.seed_generator, dtype="float32")
        keep = draw >= ops.cast(self.drop_rate_var, "float32")
        return ind * ops.cast(keep, ind.dtype)

    # --- forward --------------------------------------------------------------------------

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        training = bool(training)
        dtype = inputs.dtype
        # the skip indicator gates the whole output (below); inside, each outer channel group is
        # masked by its indicators alone (nested from the second group on)
        state = self._evaluate(training)
        w_k, skip_gate = state.kernel, state.own[0]
        inner = [ops.ones(())]
        for own in state.own[1:]:
            inner.append(inner[-1] * own)
        channel_mask = ops.cast(ops.concatenate(
            [ops.broadcast_to(g, (hi - lo,)) for g, (lo, hi) in zip(inner, self._groups)]),
            dtype)
        x = inputs
        if self.expand is not None:
            x = ops.relu(self.expand_bn(self.expand(x), training=training))
        x = ops.depthwise_conv(x, ops.cast(w_k, dtype), strides=self.stride, padding="same")
        x = ops.relu(self.dw_bn(x, training=training))
        # the mask on the projection's input rows, not on the activation: the same values and
        # gradients (y = (x ⊙ m) W = x (m ⊙ W)), without an elementwise pass over the layer's
        # widest tensor forward and backward (7% of a step on cifar, bench/search_step_cost.py)
        kernel = ops.cast(self.project.kernel, dtype) * channel_mask[:, None]
        x = self.project_bn(ops.conv(x, kernel), training=training)
        if self.allow_skip:
            x = x * ops.cast(skip_gate, dtype)  # skipped: the branch adds nothing
        return x + inputs if self.residual else x

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        h, w = input_shape[1], input_shape[2]
        out = [None if s is None else -(-s // self.stride) for s in (h, w)]
        return (input_shape[0], *out, self.c_out)

    # --- decisions and cost ---------------------------------------------------------------

    def _choice_probabilities(self, relaxed: bool = False) -> tuple[list[Any], list[Any]]:
        """P(kernel = k_j) and P(expansion = e_l) from the nested indicators (hard: one-hot;
        `relaxed`: from their sigmoids)."""
        state = self._evaluate(False, relaxed)
        on_k = [ops.ones(())] + state.rings + [ops.zeros(())]
        p_kernel = [on_k[j] * (1.0 - on_k[j + 1]) for j in range(len(self.kernels))]
        on_e = state.groups + [ops.zeros(())]
        p_expansion = [on_e[j] * (1.0 - on_e[j + 1]) for j in range(len(self.expansions))]
        return p_kernel, p_expansion

    def decisions(self) -> Op:
        """The op the hard indicators currently select."""
        p_kernel, p_expansion = self._choice_probabilities()
        pe = [float(p) for p in p_expansion]
        if self.allow_skip and sum(pe) < 0.5:
            return SKIP
        k = self.kernels[int(np.argmax([float(p) for p in p_kernel]))]
        return Op(k, self.expansions[int(np.argmax(pe))])

    @property
    def architecture_variables(self) -> tuple[Any, ...]:
        """The thresholds: Single-Path NAS' architecture parameters."""
        return (self.kernel_thresholds, self.expansion_thresholds)

    def anneal(self, temperature: float, drop_rate: float) -> None:
        """Kernel-subset dropout for the epoch (0 ends it); no temperature here."""
        self.drop_rate_var.assign(drop_rate)

    def op_probabilities(self, view: str = "loss") -> dict[Op, Any]:
        """P(op) of every candidate: P(k)·P(e) for MBConv k x e, 1 − Σ P(e) for skip: hard
        indicators in the forward pass with sigmoid gradients (views `loss`, `decided`,
        `sampled`: the superkernel's forward pass is always its decision), or the sigmoids'
        values forward too (`relaxed`; `tfnas.search.layers.searchable`)."""
        check_view(view)
        p_kernel, p_expansion = self._choice_probabilities(view == "relaxed")
        probs = {Op(k, e): p_kernel[j] * p_expansion[i]
                 for j, k in enumerate(self.kernels) for i, e in enumerate(self.expansions)}
        if self.allow_skip:
            probs[SKIP] = 1.0 - sum(p_expansion)
        return probs

    def op_scores(self) -> dict[Op, float]:
        """log P(op) under the sigmoid relaxation: how strongly the search holds each op."""
        return {op: float(np.log(max(float(p), 1e-30)))
                for op, p in self.op_probabilities("relaxed").items()}

    def expected_cost(self, costs: dict[Op, float], view: str = "loss") -> Any:
        """Eq. 11-12: Σ P(k)·P(e)·R(k, e) + P(skip)·R(skip), differentiable in the thresholds
        (with hard indicators forward: the row of the decided op; `view` as in
        `op_probabilities`).

        `costs` maps each candidate op of this layer to its cost (a latency table's rows for
        the layer's signatures, or params / FLOPs).
        """
        total = 0.0
        for op, p in self.op_probabilities(view).items():
            total = total + p * costs[op]
        return total

    def child_weights(self, op: Op) -> dict[str, list[np.ndarray]]:
        """Weights of the standalone MBConv `op` (as `tfnas.blocks.mbconv` names its layers,
        by suffix) sliced from this superkernel: the centre k x k taps and first C_in·e
        channels. Empty for skip."""
        if op.is_skip:
            return {}
        if op.kernel not in self.kernels or op.expansion not in self.expansions:
            raise ValueError(f"{op.name} is not a candidate of this layer")
        mid = self.c_in * op.expansion
        lo = (self.kernels[-1] - op.kernel) // 2

        def bn(layer: Any, n: int) -> list[np.ndarray]:
            return [np.asarray(v)[:n] for v in layer.weights]

        weights = {}
        if self.expand is not None and op.expansion != 1:
            weights["expand"] = [np.asarray(self.expand.kernel)[..., :mid]]
            weights["expand_bn"] = bn(self.expand_bn, mid)
        kernel = np.asarray(self.depthwise_kernel)
        weights["dw"] = [kernel[lo:lo + op.kernel, lo:lo + op.kernel, :mid, :]]
        weights["dw_bn"] = bn(self.dw_bn, mid)
        weights["project"] = [np.asarray(self.project.kernel)[:, :, :mid, :]]
        weights["project_bn"] = bn(self.project_bn, self.c_out)
        return weights

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(c_out=self.c_out, stride=self.stride, kernels=list(self.kernels),
                      expansions=list(self.expansions), allow_skip=self.allow_skip,
                      threshold_init=self.threshold_init, drop_rate=self.drop_rate,
                      seed=self.seed, sync_bn=self.sync_bn)
        return config
