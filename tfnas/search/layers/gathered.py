"""A mixed op's MBConv candidates held as one stacked, zero-padded weight per role, and the
chosen candidate run as one MBConv of the layer's largest shape.

The one-path methods (hard Gumbel, LightNAS Sec. 3.3; ProxylessNAS' binary gates, Cai et al.
2019, Sec. 3.2) compute one path per layer and step, and both papers claim the memory of
training one compact network. Running the chosen path as a branch of a conditional
(`tf.switch_case`) does compute one path, but the step's graph holds every branch of every
layer, forward and backward (on `cifar`, 2.92x the largest child's peak memory). Here a layer
is ONE MBConv of the largest kernel K and expansion width M = C_in·max(e) of its candidates,
the Single-Path NAS superkernel's shape, and each weight role (expand kernel, depthwise kernel,
each batch norm's scale, offset and moving statistics, the SE convolutions, the projection) is
ONE variable stacking every MBConv candidate's tensor, zero-padded to that shape:

- the 1x1 expand kernel's extra output channels, the depthwise kernel's outer taps (the k x k
  kernel at the centre of the K x K one, as in the superkernel: with SAME padding both give the
  same output) and extra channels, and the projection's extra input channels are masked to
  zero when the candidate's row is taken, so they get no gradient and stay what they are;
- the extra channels' batch norm scale and offset are masked to zero, so they stay exactly 0;
- an e=1 candidate (no expand convolution) passes its input on, zero-padded to M, in place of
  the expand unit; a candidate without squeeze-and-excitation scales by 1; skip has no row: its
  masks are zero, so the MBConv adds nothing to the residual.

So the output, the gradients of the input, of the gates and of the chosen candidate's weights
equal the conditional's (tests/test_mixed.py, through `candidate_weights`), and the candidates
not chosen get zero gradients, as they do there. Batch norm is computed from the taken scale
and offset (batch moments in training, `synchronized` across replicas as Keras' does); in
training, the chosen candidate's row of the moving statistics is updated with its channels'
moments and every other row is left as it is.

A step's graph is one MBConv per layer, one gather per role and one optimizer update per role,
with no conditional and nothing per candidate: it compiles under XLA on any backend, and a pass
holds one network's activations. The compute is the largest candidate's, whatever is chosen;
`select="switch"` computes only the chosen candidate (fewer FLOPs, much more memory).
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops

from tfnas.blocks.common import BN_EPSILON, BN_MOMENTUM, depthwise_initializer
from tfnas.blocks.mbconv import se_channels
from tfnas.run import checkpoints
from tfnas.space import Op

NORM_STATS = ("gamma", "beta", "moving_mean", "moving_variance")


def _pad(array: np.ndarray, shape: Sequence[int], centre: Sequence[bool] = ()) -> np.ndarray:
    """`array` zero-padded at the end of each axis to `shape` (at both ends, evenly, where
    `centre[axis]`)."""
    widths = []
    for axis, (have, want) in enumerate(zip(array.shape, shape)):
        extra = int(want) - int(have)
        before = extra // 2 if axis < len(centre) and centre[axis] else 0
        widths.append((before, extra - before))
    return np.pad(array, widths)


def _unpad(array: np.ndarray, shape: Sequence[int], centre: Sequence[bool] = ()) -> np.ndarray:
    """The inverse of `_pad`: the `shape` part of `array`."""
    index = []
    for axis, (have, want) in enumerate(zip(array.shape, shape)):
        before = (int(have) - int(want)) // 2 if axis < len(centre) and centre[axis] else 0
        index.append(slice(before, before + int(want)))
    return array[tuple(index)]


def _gather(values: Any, index: Any) -> Any:
    """`values[index]` along the first axis, for an index known to be in range: one gather
    node (`keras.ops.take` adds six more, to wrap negative indices), which matters in a step
    that takes about 25 rows a layer, twice."""
    import tensorflow as tf

    return tf.gather(values, index)


@keras.saving.register_keras_serializable(package="tfnas")
class GatheredMBConv(keras.layers.Layer):
    """A mixed op's MBConv candidates as stacked padded weights, run as one MBConv of the
    largest shape (module docstring). Called with (candidate index, inputs).

    Args:
        c_out, stride: the layer's output channels and stride.
        candidates: the layer's op names (skip included).
        sync_bn: batch moments summed across replicas.
    """

    def __init__(self, c_out: int, stride: int, candidates: Sequence[str],
                 sync_bn: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.c_out, self.stride = int(c_out), int(stride)
        self.candidates = tuple(Op.parse(c) for c in candidates)
        self.sync_bn = bool(sync_bn)
        # its batch norms' (`tfnas.nets.recalibrate_batchnorm` sets momentum to 0)
        self.momentum, self.epsilon = BN_MOMENTUM, BN_EPSILON
        self.mbconvs = [op for op in self.candidates if not op.is_skip]
        if not self.mbconvs:
            raise ValueError("a gathered mixed op needs an MBConv candidate")

    # --- shapes -------------------------------------------------------------------------

    def _shapes(self, op: Op | None) -> dict[str, tuple[tuple[int, ...], tuple[bool, ...]]]:
        """Per weight name: its shape for `op` (None: the padded, largest one), and which axes
        are padded at both ends. Names a candidate does not have are left out."""
        c_in, c_out, r = self.c_in, self.c_out, self.squeeze
        k = self.kernel if op is None else op.kernel
        mid = self.width if op is None else c_in * op.expansion
        expands = self.expands if op is None else op.expansion != 1
        se = self.se if op is None else op.se
        shapes: dict[str, tuple[tuple[int, ...], tuple[bool, ...]]] = {}
        if expands:
            shapes["expand_kernel"] = ((1, 1, c_in, mid), ())
            shapes.update({f"expand_bn_{s}": ((mid,), ()) for s in NORM_STATS})
        shapes["dw_kernel"] = ((k, k, mid, 1), (True, True))
        shapes.update({f"dw_bn_{s}": ((mid,), ()) for s in NORM_STATS})
        if se:
            shapes.update(se_reduce_kernel=((1, 1, mid, r), ()), se_reduce_bias=((r,), ()),
                          se_expand_kernel=((1, 1, r, mid), ()), se_expand_bias=((mid,), ()))
        shapes["project_kernel"] = ((1, 1, mid, c_out), ())
        shapes.update({f"project_bn_{s}": ((c_out,), ()) for s in NORM_STATS})
        return shapes

    def _initializer(self, name: str) -> Any:
        if name.endswith(("bias", "beta", "moving_mean")):
            return keras.initializers.Zeros()
        if name.endswith(("gamma", "moving_variance")):
            return keras.initializers.Ones()
        if name == "dw_kernel":
            return depthwise_initializer(keras)
        if name.startswith("se_"):
            return keras.initializers.GlorotUniform()  # (Keras Conv2D's default)
        return keras.initializers.HeNormal()  # (tfnas.blocks.common.conv_bn's)

    def build(self, input_shape: Sequence[int | None]) -> None:
        c_in = self.c_in = int(input_shape[-1])
        self.kernel = max(op.kernel for op in self.mbconvs)
        self.width = c_in * max(op.expansion for op in self.mbconvs)  # M
        self.expands = any(op.expansion != 1 for op in self.mbconvs)
        self.passes = any(op.expansion == 1 for op in self.mbconvs) and self.expands
        self.se = any(op.se for op in self.mbconvs)
        self.squeeze = se_channels(c_in)
        self.residual = self.stride == 1 and c_in == self.c_out
        # candidate j's row of the stacked weights (skip: none, row 0 under zero masks)
        rows, n = [], 0
        for op in self.candidates:
            rows.append(0 if op.is_skip else n)
            n += 0 if op.is_skip else 1
        k, m = self.kernel, self.width
        mid = [0 if op.is_skip else c_in * op.expansion for op in self.candidates]
        masks = {
            "row": np.array(rows, np.int32),
            "on": np.array([0.0 if op.is_skip else 1.0 for op in self.candidates], np.float32),
            "channels": np.array([np.arange(m) < w for w in mid], np.float32),
            # 1 where the expand unit runs: (an e=1 candidate passes its input on instead)
            "expand": np.array([float(op.is_skip or op.expansion != 1)
                                for op in self.candidates], np.float32),
            "se": np.array([float(op.se) for op in self.candidates], np.float32),
            "taps": np.array([_pad(np.ones((op.kernel, op.kernel), np.float32), (k, k),
                                   (True, True)) if not op.is_skip else np.zeros((k, k))
                              for op in self.candidates], np.float32)}
        self._masks = masks
        self._weights: dict[str, Any] = {}
        padded = self._shapes(None)
        for name, (shape, centre) in padded.items():
            initializer = self._initializer(name)
            values = []
            for op in self.mbconvs:
                own = self._shapes(op).get(name)
                values.append(np.zeros(shape, np.float32) if own is None else
                              _pad(np.asarray(initializer(own[0]), np.float32), shape, centre))
            stacked = np.stack(values)
            statistic = "moving" in name
            self._weights[name] = self.add_weight(
                name=name, shape=stacked.shape, trainable=not statistic,
                autocast=not statistic,
                initializer=lambda shape, dtype=None, value=stacked: ops.convert_to_tensor(
                    value, dtype or "float32"))
        checkpoints.track_children(self, "stacked", self._weights)  # (TF sees no dict)
        self.built = True

    # --- a candidate's own weights ------------------------------------------------------

    def candidate_weights(self, j: int, values: dict[str, Any] | None = None
                          ) -> dict[str, np.ndarray]:
        """Candidate j's own tensors by name (`expand_kernel`, `dw_bn_gamma`, ...), cut out
        of the stacked weights, or of `values` (arrays shaped like them, e.g. their
        gradients); {} for skip."""
        op = self.candidates[j]
        if op.is_skip:
            return {}
        row = int(self._masks["row"][j])
        source = values if values is not None else {
            name: np.asarray(v) for name, v in self._weights.items()}
        return {name: _unpad(np.asarray(source[name])[row], shape, centre)
                for name, (shape, centre) in self._shapes(op).items()}

    def set_candidate_weights(self, j: int, values: dict[str, Any]) -> None:
        """Writes candidate j's own tensors (`candidate_weights`' form) into its rows."""
        row = int(self._masks["row"][j])
        padded = self._shapes(None)
        for name, value in values.items():
            shape, centre = padded[name]
            variable = self._weights[name]
            stacked = np.array(variable)
            stacked[row] = _pad(np.asarray(value, np.float32), shape, centre)
            variable.assign(stacked)

    @property
    def weight_names(self) -> tuple[str, ...]:
        """The stacked weights' names, in `self.weights`' order."""
        return tuple(self._weights)

    # --- forward ------------------------------------------------------------------------

    def _take(self, name: str, row: Any, dtype: Any) -> Any:
        return ops.cast(_gather(self._weights[name], row), dtype)

    def _mask(self, name: str, index: Any, dtype: Any = "float32") -> Any:
        return ops.cast(_gather(self._masks[name], index), dtype)

    def _batch_norm(self, x: Any, row: Any, chosen: Any, unit: str, mask: Any,
                    training: bool) -> Any:
        """Batch norm of `x` with the taken scale and offset times `mask` (zero on padded
        channels, and for skip); in training, batch moments, and the rows where `chosen` (the
        chosen candidate's, none for skip) of the moving statistics updated as
        `keras.layers.BatchNormalization` updates its own."""
        x32 = ops.cast(x, "float32")
        if training:
            mean, variance = ops.moments(x32, axes=[0, 1, 2], synchronized=self.sync_bn)
            for moving, batch in ((self._weights[f"{unit}_moving_mean"], mean),
                                  (self._weights[f"{unit}_moving_variance"], variance)):
                old = ops.cast(moving, "float32")
                new = old * self.momentum + batch * (1.0 - self.momentum)
                moving.assign(ops.where(chosen, new, old))
        else:
            mean, variance = self._take(f"{unit}_moving_mean", row, "float32"), \
                self._take(f"{unit}_moving_variance", row, "float32")
        out = ops.batch_normalization(
            x32, mean, variance, axis=-1, epsilon=self.epsilon,
            offset=self._take(f"{unit}_beta", row, "float32") * mask,
            scale=self._take(f"{unit}_gamma", row, "float32") * mask)
        return ops.cast(out, x.dtype)

    def call(self, index: Any, inputs: Any, training: bool | None = None) -> Any:
        """The whole output of candidate `index` (an int scalar tensor): its MBConv plus the
        residual where the layer keeps its shape, or the input itself for skip."""
        training = bool(training)
        dtype = inputs.dtype
        index = ops.cast(index, "int32")
        row = _gather(self._masks["row"], index)
        channels = self._mask("channels", index)  # (M,): the candidate's own channels
        rows_in = ops.cast(ops.reshape(channels, (-1, 1)), dtype)  # (M, 1): kernels' inputs
        chosen = None  # (rows, 1): the row whose moving statistics a training pass updates
        if training:
            rows = len(self.mbconvs)
            chosen = ops.reshape(ops.one_hot(row, rows) * self._mask("on", index),
                                 (rows, 1)) > 0.5
        x = inputs
        if self.expands:
            expand = self._mask("expand", index) * channels
            x = ops.conv(inputs, self._take("expand_kernel", row, dtype)
                         * ops.cast(expand, dtype))
            x = ops.relu(self._batch_norm(x, row, chosen, "expand_bn", expand, training))
            if self.passes:  # an e=1 candidate: its input, zero-padded, in place of the unit
                on = self._mask("expand", index, dtype)
                x = on * x + (1.0 - on) * ops.pad(inputs, [(0, 0)] * 3
                                                  + [(0, self.width - self.c_in)])
        taps = ops.reshape(self._mask("taps", index), (self.kernel, self.kernel, 1, 1))
        x = ops.depthwise_conv(x, self._take("dw_kernel", row, dtype)
                               * ops.cast(taps, dtype) * rows_in,
                               strides=self.stride, padding="same")
        x = ops.relu(self._batch_norm(x, row, chosen, "dw_bn", channels, training))
        if self.se:
            s = ops.mean(x, axis=(1, 2), keepdims=True)
            s = ops.relu(ops.conv(s, self._take("se_reduce_kernel", row, dtype) * rows_in)
                         + self._take("se_reduce_bias", row, dtype))
            s = ops.sigmoid(ops.conv(s, self._take("se_expand_kernel", row, dtype)
                                     * ops.cast(channels, dtype))
                            + self._take("se_expand_bias", row, dtype)
                            * ops.cast(channels, dtype))
            on = self._mask("se", index, dtype)
            x = x * (on * s + (1.0 - on))
        x = ops.conv(x, self._take("project_kernel", row, dtype) * rows_in)
        on = ops.broadcast_to(self._mask("on", index), (self.c_out,))
        x = self._batch_norm(x, row, chosen, "project_bn", on, training)
        return x + inputs if self.residual else x

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(c_out=self.c_out, stride=self.stride,
                      candidates=[op.name for op in self.candidates], sync_bn=self.sync_bn)
        return config
