"""Multi-path mixed ops: one separate path per candidate op, weighted by architecture logits α.

Three ways to mix them (`mode`):

- `softmax` (DARTS, Liu et al. 2019, Eq. 2; FBNet's relaxation): out = Σ_j p_j · o_j(x),
  p = softmax(α), o_j(x) the candidate's whole output (MBConv plus residual where the layer
  keeps its shape; x for skip). Every path is computed.
- `gumbel` (FBNet, Wu et al. 2019, Eq. 5-6): p = softmax((α + g) / τ), g ~ Gumbel(0, 1), τ held
  in the non-trainable weight `temperature` (the search anneals it). `hard=True` is the
  LightNAS variant (Luo et al. 2022, Sec. 3.3): the forward pass computes only the path of
  argmax p (one-hot gates, `keras.ops.switch`), and the gradient is that of the soft p
  (straight-through: gate = onehot + p − stop_gradient(p)), so α learns while one path runs.
- `proxyless` (ProxylessNAS, Cai et al. 2019, Sec. 3.2): binary gates. A weight step opens ONE
  path drawn with probability p_j, p = softmax(α) (Eq. 2), and computes only it; the drawn
  index is kept in `sampled` (REINFORCE, Eq. 8, reads it). An architecture step
  (`arch_phase`, Sec. 3.2.1) samples two paths from p without replacement, renormalises their
  probabilities q, opens one with probability q, computes both, and α gets the BinaryConnect
  estimate of Eq. 4, ∂L/∂α_i = Σ_j ∂L/∂g_j · ∂q_j/∂α_i with ∂L/∂g_j the loss's sensitivity to
  path j (gate = g + q − stop_gradient(q)); α of paths not sampled get no gradient. After the
  update, `rescale_alpha` shifts the two updated α so that Σ exp(α) over the pair is unchanged:
  the unsampled paths keep their probabilities. The closed path's gate is 0 in value, so its
  output is computed without a backward pass (ProxylessNAS' own code does the same): memory
  holds one path's activations for weights and for α, not all of them.

How the one path runs (`select`): by default the candidates' weights are stacked per role and
the chosen row runs as one MBConv of the layer's largest shape (`tfnas.search.layers.gathered`,
which then holds the weights: such a mixed op has no `paths`), so a pass holds one network's
activations and the step's graph has nothing per candidate.

Runtime is accounted in the layer (FBNet Eq. 4, ProxylessNAS Eq. 5): E[R] = Σ_j p_j · R_j with
p = softmax(α), R_j the layer's latency table rows (or the predictor on the soft one-hot,
`op_probabilities`). With a one-hot p this is the table latency of the argmax op.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import keras
import numpy as np
from keras import ops

from tfnas.blocks import family
from tfnas.run import checkpoints
from tfnas.search.layers.gathered import GatheredMBConv
from tfnas.search.layers.searchable import check_view
from tfnas.space import LayerSignature, Op

MODES = ("softmax", "gumbel", "proxyless")
SELECTS = ("gather", "switch", "mask")


@keras.saving.register_keras_serializable(package="tfnas")
class OpPath(keras.layers.Layer):
    """One candidate path: the standalone op without its shortcut, built by the op's family
    module (`tfnas.blocks`), so a path computes what the derived network's layer computes."""

    def __init__(self, c_out: int, stride: int, op: str, sync_bn: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.c_out, self.stride = int(c_out), int(stride)
        self.op, self.sync_bn = Op.parse(op), bool(sync_bn)

    def build(self, input_shape: Sequence[int | None]) -> None:
        h, w, c_in = input_shape[1:]
        sig = LayerSignature(h or 0, w or 0, int(c_in), self.c_out, self.stride, self.op)
        inputs = keras.Input(tuple(input_shape[1:]))
        self.net = keras.Model(inputs, family(self.op).build(
            inputs, keras, sig, "path", self.sync_bn, residual=False))
        self.built = True

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.net(inputs, training=training)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        return self.net.compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(c_out=self.c_out, stride=self.stride, op=self.op.name,
                      sync_bn=self.sync_bn)
        return config


@keras.saving.register_keras_serializable(package="tfnas")
class MixedOp(keras.layers.Layer):
    """A searchable layer over separate candidate paths (see the module docstring).

    Args:
        c_out: output channels.
        stride: stride of every MBConv path.
        candidates: op names of the layer (`mbconv_k3_e6`, ..., `skip`; skip needs stride 1
            and c_in == c_out).
        mode: `softmax`, `gumbel` or `proxyless`.
        hard: gumbel only: one-hot forward, straight-through gradient (LightNAS).
        temperature: initial Gumbel-softmax temperature τ.
        seed: seed of the Gumbel noise and path sampling.
        sync_bn: cross-replica batch norm.
        select: how hard Gumbel and proxyless compute the chosen path: `gather` holds the
            candidates' weights stacked and zero-padded per role and runs one MBConv of the
            layer's largest shape with the chosen row (`tfnas.search.layers.gathered`: one
            network's activations, no conditional, compiles under XLA anywhere; the largest
            path's FLOPs); `switch` runs
            that path's branch alone (`keras.ops.switch`: only its FLOPs, but the step's graph
            holds every branch and takes several times the memory); `mask` computes every path
            and keeps the chosen one by a one-hot mask. All three give the same values and
            gradients (with `mask`, every path's BN statistics move).
    """

    def __init__(self, c_out: int, stride: int, candidates: Sequence[str], mode: str = "softmax",
                 hard: bool = False, temperature: float = 5.0, seed: int | None = None,
                 sync_bn: bool = False, select: str = "gather", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown mixed-op mode {mode!r}: choose {', '.join(MODES)}")
        if select not in SELECTS:
            raise ValueError(f"unknown path selection {select!r}: choose {', '.join(SELECTS)}")
        self.select = select
        self.c_out, self.stride = int(c_out), int(stride)
        self.candidates = tuple(Op.parse(c) for c in candidates)
        if len(self.candidates) < 1:
            raise ValueError("a mixed op needs at least one candidate")
        self.mode, self.hard = mode, bool(hard)
        self.temperature_init = float(temperature)
        self.seed, self.sync_bn = seed, bool(sync_bn)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.arch_phase = False  # proxyless: compute both sampled paths (set by `arch_phase`)

    def build(self, input_shape: Sequence[int | None]) -> None:
        self.c_in = int(input_shape[-1])
        skip = any(op.is_skip for op in self.candidates)
        if skip and (self.stride != 1 or self.c_in != self.c_out):
            raise ValueError("skip needs stride 1 and c_in == c_out")
        # one path per step, gathered: every candidate's weights stacked in one MBConv
        self.gathered = None
        if self.select == "gather" and self.one_path and any(
                not op.is_skip for op in self.candidates):
            self.gathered = GatheredMBConv(self.c_out, self.stride,
                                           [op.name for op in self.candidates], self.sync_bn,
                                           name="gathered")
            self.gathered.build(input_shape)
        # the op paths (skip has none, nor a gathered layer); `_path_of[j]`: index of
        # candidate j's path, or -1
        self.paths = [] if self.gathered is not None else [
            OpPath(self.c_out, self.stride, op.name, self.sync_bn, name=f"path_{op.name}")
            for op in self.candidates if not op.is_skip]
        self._path_of, n = [], 0
        for op in self.candidates:
            self._path_of.append(-1 if op.is_skip or self.gathered is not None else n)
            n += 0 if op.is_skip else 1
        checkpoints.track_children(self, "paths", self.paths)
        for path in self.paths:
            path.build(input_shape)
        self.alpha = self.add_weight(name="alpha", shape=(len(self.candidates),),
                                     initializer="zeros")
        self.temperature = self.add_weight(
            name="temperature", shape=(), trainable=False,
            initializer=keras.initializers.Constant(self.temperature_init))
        # proxyless: the path a weight step opened, and the pair an architecture step sampled
        self.sampled = self.add_weight(name="sampled", shape=(), dtype="int32", trainable=False,
                                       initializer="zeros", aggregation="only_first_replica")
        self.pair = self.add_weight(name="pair", shape=(min(2, len(self.candidates)),),
                                    dtype="int32", trainable=False, initializer="zeros",
                                    aggregation="only_first_replica")
        self.built = True

    @property
    def one_path(self) -> bool:
        """Whether every pass computes one path (hard Gumbel, proxyless' weight steps)."""
        return self.mode == "proxyless" or (self.mode == "gumbel" and self.hard)

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    # --- paths ------------------------------------------------------------------------------

    def _run_path(self, j: int, inputs: Any, training: bool) -> Any:
        """The whole output of candidate j: the MBConv path plus the residual where the layer
        keeps its shape, and the input itself for skip. The residual is inside what a gate
        weighs, so a hard gate on skip still tells α how the loss depends on it (with the
        residual outside, a chosen skip would gate zeros and α would learn from the cost
        alone, which drove hard Gumbel to skip everywhere)."""
        if self._path_of[j] < 0:
            return inputs
        out = self.paths[self._path_of[j]](inputs, training=training)
        return out + inputs if self.residual else out

    def _one_path(self, index: Any, inputs: Any, training: bool) -> Any:
        """The output of path `index` alone: its weights gathered into the layer's largest
        MBConv (`select="gather"`), its branch alone (`switch`), or every path under a one-hot
        mask (`mask`)."""
        if self.gathered is not None:
            return self.gathered.call(index, inputs, training)
        if self.select == "mask":
            return self._weighted(ops.one_hot(index, len(self.candidates)), inputs, training)
        branches = [lambda x, j=j: self._run_path(j, x, training)
                    for j in range(len(self.candidates))]
        return ops.switch(index, branches, inputs)

    def _weighted(self, weights: Any, inputs: Any, training: bool) -> Any:
        """Σ_j weights_j · o_j(x) over every candidate."""
        weights = ops.cast(weights, inputs.dtype)
        return sum(weights[j] * self._run_path(j, inputs, training)
                   for j in range(len(self.candidates)))

    def _gumbel(self) -> Any:
        u = keras.random.uniform((len(self.candidates),), minval=1e-6, maxval=1.0 - 1e-6,
                                 seed=self.seed_generator)
        return -ops.log(-ops.log(u))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        training = bool(training)
        dtype = inputs.dtype
        alpha = ops.cast(self.alpha, "float32")
        if self.mode == "softmax" or (self.mode == "gumbel" and not self.hard):
            if self.mode == "gumbel" and training:
                alpha = (alpha + self._gumbel()) / ops.cast(self.temperature, "float32")
            return self._weighted(ops.softmax(alpha), inputs, training)
        if self.mode == "gumbel":  # hard: one path forward, soft gradient
            if training:
                alpha = (alpha + self._gumbel()) / ops.cast(self.temperature, "float32")
            p = ops.softmax(alpha)
            index = ops.argmax(p)
            gate = ops.take(p, index) + 1.0 - ops.stop_gradient(ops.take(p, index))
            return ops.cast(gate, dtype) * self._one_path(index, inputs, training)
        return self._proxyless(alpha, inputs, training)

    def _proxyless(self, alpha: Any, inputs: Any, training: bool) -> Any:
        if not training:  # evaluation: the most likely path
            return self._one_path(ops.argmax(alpha), inputs, training)
        if len(self.candidates) == 1 or not self.arch_phase:  # Eq. 2: one path, drawn from p
            index = ops.cast(keras.random.categorical(alpha[None, :], 1,
                                                      seed=self.seed_generator)[0, 0], "int32")
            self.sampled.assign(index)
            return self._one_path(index, inputs, training)
        # Sec. 3.2.1: two paths without replacement from softmax(α) (Gumbel top-2),
        # renormalised, one of them opened
        _, pair = ops.top_k(alpha + self._gumbel(), k=2)
        pair = ops.cast(pair, "int32")
        self.pair.assign(pair)
        q = ops.softmax(ops.take(alpha, pair))
        draw = keras.random.uniform((), seed=self.seed_generator)
        opened = ops.cast(draw >= q[0], "int32")  # 0: first sampled path, 1: second
        gates = ops.one_hot(opened, 2) + q - ops.stop_gradient(q)  # value: the open path only
        if self.select == "mask":  # every path once, the two sampled ones gated
            n = len(self.candidates)
            return self._weighted(gates[0] * ops.one_hot(pair[0], n)
                                  + gates[1] * ops.one_hot(pair[1], n), inputs, training)
        # the closed path's gate is 0 in value, so nothing but its gate's gradient,
        # ⟨∂L/∂y, o(x)⟩, depends on it: its output is computed without a backward pass (as
        # ProxylessNAS' own code does), and only the open path's activations are kept
        dtype = inputs.dtype
        closed = 1 - opened
        return (ops.cast(ops.take(gates, opened), dtype)
                * self._one_path(ops.take(pair, opened), inputs, training)
                + ops.cast(ops.take(gates, closed), dtype)
                * ops.stop_gradient(self._one_path(ops.take(pair, closed), inputs, training)))

    def rescale_alpha(self, old_alpha: Any) -> None:
        """After an architecture step on the sampled pair (ProxylessNAS Sec. 3.2.1): shift the
        pair's α by log(Σ_pair exp(α_new) / Σ_pair exp(α_old)), so that the paths not sampled
        keep their probabilities."""
        if len(self.candidates) < 2:
            return
        alpha = ops.cast(self.alpha, "float32")
        old_alpha = ops.cast(old_alpha, "float32")
        offset = (ops.logsumexp(ops.take(alpha, self.pair))
                  - ops.logsumexp(ops.take(old_alpha, self.pair)))
        in_pair = ops.sum(ops.one_hot(self.pair, len(self.candidates)), axis=0)
        self.alpha.assign(ops.cast(alpha - offset * in_pair, self.alpha.dtype))

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple:
        h, w = input_shape[1], input_shape[2]
        out = [None if s is None else -(-s // self.stride) for s in (h, w)]
        return (input_shape[0], *out, self.c_out)

    # --- decisions and cost -----------------------------------------------------------------

    def probabilities(self, hard: bool = False, sampled: bool = False) -> Any:
        """p = softmax(α) over the candidates (during a proxyless architecture step: the
        renormalised probabilities of the sampled pair); `hard`: the one-hot of the arg-max
        (the op `decisions` returns) in the forward pass with p's gradient (straight-through);
        `sampled`: the one-hot of the path the last proxyless forward pass opened (no
        gradient)."""
        n = len(self.candidates)
        if sampled:
            return ops.one_hot(self.sampled, n)
        alpha = ops.cast(self.alpha, "float32")
        p = ops.softmax(alpha)
        if self.mode == "proxyless" and self.arch_phase and n > 1:
            # ProxylessNAS' architecture step prices the sampled pair only (their
            # current_prob_over_ops): q over the pair, 0 elsewhere, so the cost's gradient,
            # like the loss's, reaches only the pair's α
            q = ops.softmax(ops.take(alpha, self.pair))
            p = ops.sum(q[:, None] * ops.one_hot(self.pair, n), axis=0)
        if not hard:
            return p
        return ops.one_hot(ops.argmax(alpha), n) + p - ops.stop_gradient(p)

    def sampled_log_probability(self) -> Any:
        """log p of the path the last proxyless forward pass opened (REINFORCE, Eq. 8)."""
        log_p = ops.log_softmax(ops.cast(self.alpha, "float32"))
        return ops.take(log_p, self.sampled)

    @property
    def architecture_variables(self) -> tuple[Any, ...]:
        return (self.alpha,)

    def anneal(self, temperature: float, drop_rate: float) -> None:
        """The Gumbel-softmax temperature for the epoch; no kernel-subset dropout here."""
        self.temperature.assign(temperature)

    def op_probabilities(self, view: str = "loss") -> dict[Op, Any]:
        """P(op) per candidate under `view` (`tfnas.search.layers.searchable`): p (`loss`, and
        `relaxed`: p is this layer's relaxation), the decided one-hot with p's gradient, or the
        sampled path."""
        check_view(view)
        p = self.probabilities(view == "decided", view == "sampled")
        return {op: p[j] for j, op in enumerate(self.candidates)}

    def op_scores(self) -> dict[Op, float]:
        """log softmax(α): how strongly the search holds each op."""
        alpha = np.asarray(self.alpha, np.float64)
        log_p = alpha - alpha.max() - np.log(np.exp(alpha - alpha.max()).sum())
        return {op: float(log_p[j]) for j, op in enumerate(self.candidates)}

    def expected_cost(self, costs: dict[Op, float], view: str = "loss") -> Any:
        """E[R] = Σ_j p_j · R_j (FBNet Eq. 4, ProxylessNAS Eq. 5); `decided`: the cost of the
        arg-max op with E[R]'s gradient (what a budget's multiplier integrates); `sampled`:
        the cost of the path the last forward pass opened."""
        check_view(view)
        p = self.probabilities(view == "decided", view == "sampled")
        return ops.sum(p * ops.convert_to_tensor(
            np.array([costs[op] for op in self.candidates], np.float32)))

    def decisions(self) -> Op:
        """The arg-max path."""
        return self.candidates[int(np.argmax(np.asarray(self.alpha)))]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(c_out=self.c_out, stride=self.stride,
                      candidates=[op.name for op in self.candidates], mode=self.mode,
                      hard=self.hard, temperature=self.temperature_init, seed=self.seed,
                      select=self.select,
                      sync_bn=self.sync_bn)
        return config


@contextlib.contextmanager
def arch_phase(layers: Sequence[MixedOp]) -> Iterator[None]:
    """While tracing an architecture step: proxyless layers compute both sampled paths."""
    for layer in layers:
        layer.arch_phase = True
    try:
        yield
    finally:
        for layer in layers:
            layer.arch_phase = False
