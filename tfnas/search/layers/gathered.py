"""One candidate of a mixed op run as one MBConv of the layer's largest shape, with the chosen
candidate's weights gathered into it.

The one-path methods (hard Gumbel, LightNAS Sec. 3.3; ProxylessNAS' binary gates, Cai et al.
2019, Sec. 3.2) compute one path per layer and step, and both papers claim the memory of
training one compact network. Running the chosen path as a branch of a conditional
(`tf.switch_case`) does compute one path, but the step's graph holds every branch of every
layer, forward and backward, and on this host the traced and instantiated functions took about
2.3 GiB on `cifar` (bench/search_step_cost.py --phases). Here a layer is ONE MBConv of the
largest kernel K and expansion width M = C_in·max(e) of its candidates, the Single-Path NAS
superkernel's shape, whose weights are those of the chosen candidate, zero-padded:

- the 1x1 expand kernel's extra output channels, the depthwise kernel's outer taps (the k x k
  kernel at the centre of the K x K one, as in the superkernel: with SAME padding both give the
  same output) and extra channels, and the projection's extra input channels are zero;
- the extra channels' batch norm has zero scale and offset, so they stay exactly zero;
- an e=1 candidate (no expand convolution) passes its input on, zero-padded to M, in place of
  the expand unit; a candidate without squeeze-and-excitation scales by 1; skip gathers zeros
  everywhere, so the MBConv adds nothing to the residual.

So the output, the gradients of the input, of the gates and of the chosen candidate's weights
equal the conditional's (tests/test_mixed.py), and the candidates not chosen get zero
gradients, as they do there. Batch norm is computed here from the gathered scale and offset
(batch moments in training, with `synchronized` across replicas as Keras' does); in training,
the chosen candidate's moving statistics are updated with its channels' moments and every other
candidate's are left as they are.

The step's graph is one MBConv per layer (plus small weight-padding ops), with no conditional,
so it compiles under XLA on any backend, and a pass holds one network's activations. It is not
the superkernel's size: on `cifar` at batch 64 hard Gumbel's step peaked at 1.91x the largest
child's memory (the conditional's: 2.92x), the excess being every candidate's weights and
optimizer state and a bi-level step's two traced passes (README, 2026-11-30). The compute is
the largest candidate's, whatever is chosen; `select="switch"` computes only the chosen
candidate (fewer FLOPs, much more memory).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from keras import ops

from tfnas.blocks.mbconv import se_channels
from tfnas.space import Op


def _pad(tensor: Any, shape: Sequence[int], centre: Sequence[bool] = ()) -> Any:
    """`tensor` zero-padded at the end of each axis to `shape` (at both ends, evenly, where
    `centre[axis]`)."""
    widths = []
    for axis, (have, want) in enumerate(zip(tensor.shape, shape)):
        extra = int(want) - int(have)
        before = extra // 2 if axis < len(centre) and centre[axis] else 0
        widths.append((before, extra - before))
    if all(w == (0, 0) for w in widths):
        return tensor
    return ops.pad(tensor, widths)


class GatheredPaths:
    """A mixed op's MBConv candidates as one MBConv of the largest shape (module docstring).

    Args:
        candidates: the layer's ops (skip included).
        paths: per candidate, its `OpPath` (built), or None for skip.
        c_in, c_out, stride: the layer's shape.
        sync_bn: batch moments summed across replicas.
    """

    def __init__(self, candidates: Sequence[Op], paths: Sequence[Any], c_in: int, c_out: int,
                 stride: int, sync_bn: bool = False) -> None:
        self.candidates = tuple(candidates)
        self.c_in, self.c_out, self.stride, self.sync_bn = c_in, c_out, stride, sync_bn
        mbconvs = [op for op in self.candidates if not op.is_skip]
        if not mbconvs:
            raise ValueError("a gathered mixed op needs an MBConv candidate")
        self.kernel = max(op.kernel for op in mbconvs)
        self.width = c_in * max(op.expansion for op in mbconvs)  # M
        self.expands = any(op.expansion != 1 for op in mbconvs)
        self.passes = any(op.expansion == 1 for op in mbconvs) and self.expands
        self.se = any(op.se for op in mbconvs)
        self.squeeze = se_channels(c_in)
        self.residual = stride == 1 and c_in == c_out
        # per candidate: its path's sublayers by role (None for skip)
        self.layers = [None if path is None else
                       {role: _layer(path.net, f"path_{role}") for role in
                        ("expand", "expand_bn", "dw", "dw_bn", "se_reduce", "se_expand",
                         "project", "project_bn")}
                       for path in paths]

    # --- gathering ----------------------------------------------------------------------

    def _take(self, index: Any, part: Callable[[int, dict], Any], shape: Sequence[int],
              fill: float = 0.0, dtype: str = "float32") -> Any:
        """`part(j, layers of j)` of candidate `index`: every candidate's tensor (a constant
        `fill` where a candidate has none, e.g. skip) stacked, and one taken."""
        parts = []
        for j, layers in enumerate(self.layers):
            value = None if layers is None else part(j, layers)
            parts.append(ops.full(shape, fill, dtype) if value is None
                         else ops.cast(value, dtype))
        return ops.take(ops.stack(parts), index, axis=0)

    def _flag(self, index: Any, test: Callable[[Op], bool], dtype: str) -> Any:
        """1.0 where candidate `index` passes `test`, else 0.0."""
        values = [1.0 if test(op) else 0.0 for op in self.candidates]
        return ops.take(ops.convert_to_tensor(values, dtype), index)

    def _kernel(self, index: Any, role: str, shape: Sequence[int], dtype: str,
                centre: Sequence[bool] = ()) -> Any:
        def part(j: int, layers: dict) -> Any:
            layer = layers[role]
            if layer is None:
                return None
            return _pad(layer.kernel, shape, centre)
        return self._take(index, part, shape, dtype=dtype)

    def _bias(self, index: Any, role: str, size: int, dtype: str) -> Any:
        def part(j: int, layers: dict) -> Any:
            layer = layers[role]
            return None if layer is None else _pad(layer.bias, (size,))
        return self._take(index, part, (size,), dtype=dtype)

    def _batch_norm(self, x: Any, index: Any, role: str, training: bool) -> Any:
        """Batch norm of `x` with candidate `index`'s scale and offset (zero on padded
        channels); in training, batch moments, and candidate `index`'s moving statistics
        updated (as `keras.layers.BatchNormalization` updates them)."""
        size = int(x.shape[-1])
        bns = [None if layers is None else layers[role] for layers in self.layers]
        first = next(bn for bn in bns if bn is not None)
        stat = {"gamma": 0.0, "beta": 0.0, "moving_mean": 0.0, "moving_variance": 1.0}

        def gathered(name: str) -> Any:
            return self._take(index, lambda j, layers: None if bns[j] is None else
                              _pad(getattr(bns[j], name), (size,)), (size,), stat[name])

        x32 = ops.cast(x, "float32")
        if training:
            mean, variance = ops.moments(x32, axes=[0, 1, 2], synchronized=self.sync_bn)
            for j, bn in enumerate(bns):
                if bn is None:
                    continue
                chosen = ops.equal(index, j)
                n = int(bn.moving_mean.shape[0])
                for moving, batch in ((bn.moving_mean, mean), (bn.moving_variance, variance)):
                    old = ops.cast(moving, "float32")
                    new = old * bn.momentum + batch[:n] * (1.0 - bn.momentum)
                    moving.assign(ops.where(chosen, new, old))
        else:
            mean, variance = gathered("moving_mean"), gathered("moving_variance")
        out = ops.batch_normalization(x32, mean, variance, axis=-1, offset=gathered("beta"),
                                      scale=gathered("gamma"), epsilon=first.epsilon)
        return ops.cast(out, x.dtype)

    # --- forward ------------------------------------------------------------------------

    def __call__(self, index: Any, inputs: Any, training: bool) -> Any:
        """The whole output of candidate `index` (an int32 scalar tensor): its MBConv plus the
        residual where the layer keeps its shape, or the input itself for skip."""
        dtype = inputs.dtype
        index = ops.cast(index, "int32")
        c_in, width, k = self.c_in, self.width, self.kernel
        x = inputs
        if self.expands:
            x = ops.conv(inputs, self._kernel(index, "expand", (1, 1, c_in, width), dtype))
            x = ops.relu(self._batch_norm(x, index, "expand_bn", training))
            if self.passes:  # an e=1 candidate: its input, zero-padded, in place of the unit
                on = self._flag(index, lambda op: op.is_skip or op.expansion != 1, dtype)
                x = on * x + (1.0 - on) * _pad(inputs, (*inputs.shape[:-1], width))
        x = ops.depthwise_conv(x, self._kernel(index, "dw", (k, k, width, 1), dtype,
                                               centre=(True, True)),
                               strides=self.stride, padding="same")
        x = ops.relu(self._batch_norm(x, index, "dw_bn", training))
        if self.se:
            r = self.squeeze
            s = ops.mean(x, axis=(1, 2), keepdims=True)
            s = ops.relu(ops.conv(s, self._kernel(index, "se_reduce", (1, 1, width, r), dtype))
                         + self._bias(index, "se_reduce", r, dtype))
            s = ops.sigmoid(ops.conv(s, self._kernel(index, "se_expand", (1, 1, r, width),
                                                     dtype))
                            + self._bias(index, "se_expand", width, dtype))
            on = self._flag(index, lambda op: op.se, dtype)
            x = x * (on * s + (1.0 - on))
        x = ops.conv(x, self._kernel(index, "project", (1, 1, width, self.c_out), dtype))
        x = self._batch_norm(x, index, "project_bn", training)
        return x + inputs if self.residual else x


def _layer(model: Any, name: str) -> Any:
    """`model`'s layer `name`, or None if it has none (e.g. no SE, or e=1 has no expand)."""
    try:
        return model.get_layer(name)
    except ValueError:
        return None
