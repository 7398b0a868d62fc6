"""Search spaces as data, and the presets.

A `SearchSpace` is a plain, frozen description (no layer code), in the spirit of TuNAS'
`schema.py`: a stem, an optional fixed first MBConv, stages of (filters, layers, stride) whose
layers are searchable, an optional fixed last MBConv, and a head. Every searchable layer chooses one `Op` from the space's
candidates; `skip` only where the layer keeps its shape.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

from tfnas.errors import TfnasError
from tfnas.space.ops import SKIP, LayerSignature, Op, out_size


@dataclasses.dataclass(frozen=True)
class Stage:
    """`layers` searchable layers with `filters` outputs; the first one has `stride`."""

    filters: int
    layers: int
    stride: int = 1


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """Geometry of one searchable layer of a space."""

    index: int
    height: int
    width: int
    c_in: int
    c_out: int
    stride: int

    @property
    def keeps_shape(self) -> bool:
        """True where a skip (identity) op is possible."""
        return self.stride == 1 and self.c_in == self.c_out


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: nearest multiple of divisor, never below 90% of value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A MobileNet-like macro space whose stage layers choose among MBConv k x e and skip.

    Network: stem (3x3 conv, BN, ReLU) → optional fixed first layer (MBConv3x3-e1 to
    `first_filters`) → searchable layers of the stages → optional fixed last layer
    (MBConv3x3-e`last_expansion` to `last_filters`, stride 1) → head (1x1 conv to
    `head_filters`, BN, ReLU, global average pool, dropout, dense to `num_classes`).
    """

    name: str
    input_size: int
    num_classes: int
    stem_filters: int
    stem_stride: int
    first_filters: int  # 0: no fixed first layer
    stages: tuple[Stage, ...]
    head_filters: int
    last_filters: int = 0  # 0: no fixed last layer
    last_expansion: int = 6
    kernels: tuple[int, ...] = (3, 5)
    expansions: tuple[int, ...] = (3, 6)
    squeeze_excite: tuple[bool, ...] = (False,)  # (True,): every MBConv; (False, True): searched
    allow_skip: bool = True
    width_multiplier: float = 1.0
    input_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(
            s if isinstance(s, Stage) else Stage(**s) if isinstance(s, Mapping) else Stage(*s)
            for s in self.stages))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "expansions", tuple(int(e) for e in self.expansions))
        if any(v not in (True, False) for v in self.squeeze_excite):
            raise TfnasError(f"bad search space {self.name!r}: squeeze_excite lists booleans, "
                             f"got {list(self.squeeze_excite)}")
        object.__setattr__(self, "squeeze_excite", tuple(sorted(set(
            bool(v) for v in self.squeeze_excite))))
        problems = []
        if self.input_size < 1 or self.num_classes < 1 or self.input_channels < 1:
            problems.append("input_size, num_classes and input_channels must be positive")
        if self.width_multiplier <= 0:
            problems.append("width_multiplier must be positive")
        if not self.stages or any(s.layers < 1 or s.filters < 1 or s.stride not in (1, 2)
                                  for s in self.stages):
            problems.append("every stage needs filters >= 1, layers >= 1 and stride 1 or 2")
        if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
            problems.append("kernels must be odd and positive")
        if not self.expansions or any(e < 1 for e in self.expansions):
            problems.append("expansions must be positive")
        if not self.squeeze_excite:
            problems.append("squeeze_excite must list false, true or both")
        if self.last_filters < 0 or self.last_expansion < 1:
            problems.append("last_filters must be 0 or more and last_expansion positive")
        if self.stem_stride not in (1, 2):
            problems.append("stem_stride must be 1 or 2")
        if problems:
            raise TfnasError(f"bad search space {self.name!r}: " + "; ".join(problems))

    # --- geometry -------------------------------------------------------------------------

    def channels(self, filters: int) -> int:
        """Filters after the width multiplier (rounded to a multiple of 8)."""
        if self.width_multiplier == 1.0:
            return filters
        return make_divisible(filters * self.width_multiplier)

    @property
    def stem_channels(self) -> int:
        return self.channels(self.stem_filters)

    @property
    def head_channels(self) -> int:
        """MobileNetV2 keeps the head width when the multiplier is below 1."""
        if self.width_multiplier > 1.0:
            return make_divisible(self.head_filters * self.width_multiplier)
        return self.head_filters

    @property
    def stem_size(self) -> int:
        return out_size(self.input_size, self.stem_stride)

    @property
    def first_layer(self) -> LayerSignature | None:
        """The fixed MBConv3x3-e1 after the stem, or None."""
        if not self.first_filters:
            return None
        size = self.stem_size
        return LayerSignature(size, size, self.stem_channels, self.channels(self.first_filters),
                              1, Op(3, 1))

    @functools.cached_property
    def layers(self) -> tuple[LayerSpec, ...]:
        """The searchable layers in network order."""
        size = self.stem_size
        c_in = self.first_layer.c_out if self.first_layer else self.stem_channels
        specs = []
        for stage in self.stages:
            c_out = self.channels(stage.filters)
            for j in range(stage.layers):
                stride = stage.stride if j == 0 else 1
                specs.append(LayerSpec(len(specs), size, size, c_in, c_out, stride))
                size = out_size(size, stride)
                c_in = c_out
        return tuple(specs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def final_size(self) -> int:
        """Spatial size after the searchable layers (the fixed last layer keeps it)."""
        last = self.layers[-1]
        return out_size(last.height, last.stride)

    @property
    def last_layer(self) -> LayerSignature | None:
        """The fixed MBConv3x3 after the searchable layers, or None."""
        if not self.last_filters:
            return None
        size = self.final_size
        return LayerSignature(size, size, self.layers[-1].c_out, self.channels(self.last_filters),
                              1, Op(3, self.last_expansion))

    @property
    def head_input_channels(self) -> int:
        """Channels entering the head's 1x1 conv."""
        last = self.last_layer
        return last.c_out if last is not None else self.layers[-1].c_out

    @functools.cached_property
    def ops(self) -> tuple[Op, ...]:
        """All candidate ops of the space, in one-hot column order: (k, e, SE) ascending, skip
        last."""
        mbconvs = tuple(Op(k, e, se) for k in sorted(self.kernels)
                        for e in sorted(self.expansions) for se in self.squeeze_excite)
        return mbconvs + ((SKIP,) if self.allow_skip else ())

    @property
    def smallest_op(self) -> Op:
        """The MBConv of the smallest kernel and expansion (with SE only if every one has it)."""
        return Op(min(self.kernels), min(self.expansions), min(self.squeeze_excite))

    @property
    def largest_op(self) -> Op:
        """The MBConv of the largest kernel and expansion (with SE where the space has it)."""
        return Op(max(self.kernels), max(self.expansions), max(self.squeeze_excite))

    def candidates(self, index: int) -> tuple[Op, ...]:
        """Ops allowed at searchable layer `index` (skip only where the layer keeps shape)."""
        spec = self.layers[index]
        return tuple(op for op in self.ops if not op.is_skip or spec.keeps_shape)

    def signature(self, index: int, op: Op | str) -> LayerSignature:
        spec = self.layers[index]
        return LayerSignature(spec.height, spec.width, spec.c_in, spec.c_out, spec.stride,
                              Op.parse(op))

    def signatures(self) -> list[LayerSignature]:
        """Every distinct signature any architecture of the space can contain."""
        seen = {self.signature(i, op) for i in range(self.num_layers) for op in self.candidates(i)}
        return sorted(seen)

    # --- fixed parts: counted once, whatever the architecture -----------------------------

    def fixed_params(self) -> int:
        stem = 3 * 3 * self.input_channels * self.stem_channels + 4 * self.stem_channels
        fixed = sum(sig.params() for sig in (self.first_layer, self.last_layer) if sig)
        head = self.head_input_channels * self.head_channels + 4 * self.head_channels
        classifier = (self.head_channels + 1) * self.num_classes
        return stem + fixed + head + classifier

    def fixed_flops(self) -> int:
        stem = self.stem_size ** 2 * 3 * 3 * self.input_channels * self.stem_channels
        fixed = sum(sig.flops() for sig in (self.first_layer, self.last_layer) if sig)
        head = self.final_size ** 2 * self.head_input_channels * self.head_channels
        classifier = self.head_channels * self.num_classes
        return stem + fixed + head + classifier

    # --- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [dataclasses.asdict(s) for s in self.stages]
        data["kernels"] = list(self.kernels)
        data["expansions"] = list(self.expansions)
        if self.squeeze_excite == (False,):  # the default: files stay as they were before SE
            del data["squeeze_excite"]
        else:
            data["squeeze_excite"] = list(self.squeeze_excite)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpace":
        if not isinstance(data, Mapping):
            raise TfnasError(f"a search space must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TfnasError(f"unknown search space field(s) {unknown}; known: {sorted(known)}")
        try:
            stages = tuple(Stage(**s) for s in data.get("stages", ()))
            return cls(**{**data, "stages": stages})
        except TypeError as err:
            raise TfnasError(f"malformed search space: {err}") from None

    def replace(self, **changes: Any) -> "SearchSpace":
        return dataclasses.replace(self, **changes)


# The Single-Path NAS space (Stamoulis et al., Fig. 2; MnasNet/FBNet filter numbers) as the
# authors' code builds it: of the 22 MBConv layers, layer 0 (MBConv3x3-e1, 32 → 16 at 112x112)
# and layer 21 (MBConv3x3-e6, 192 → 320 at 7x7) are fixed, and the 20 between are searched.
# Op columns k3e3, k3e6, k5e3, k5e6 match the published Pixel 1 runtime model's indices 0..3.
_PRESETS: dict[str, SearchSpace] = {
    "single_path": SearchSpace(
        name="single_path", input_size=224, num_classes=1000, stem_filters=32, stem_stride=2,
        first_filters=16,
        stages=(Stage(24, 4, 2), Stage(40, 4, 2), Stage(80, 4, 2), Stage(96, 4, 1),
                Stage(192, 4, 2)),
        last_filters=320, last_expansion=6, head_filters=1280, kernels=(3, 5),
        expansions=(3, 6)),
    # ProxylessNAS mobile space (Cai et al.): fixed MBConv3x3-e1 first layer, k in {3,5,7}.
    "proxyless_mobile": SearchSpace(
        name="proxyless_mobile", input_size=224, num_classes=1000, stem_filters=32,
        stem_stride=2, first_filters=16,
        stages=(Stage(24, 4, 2), Stage(40, 4, 2), Stage(80, 4, 2), Stage(96, 4, 1),
                Stage(192, 4, 2), Stage(320, 1, 1)),
        head_filters=1280, kernels=(3, 5, 7), expansions=(3, 6)),
    # CIFAR-sized MobileNetV2 layout (stride 1 stem and first stage for 32x32 inputs).
    "cifar": SearchSpace(
        name="cifar", input_size=32, num_classes=10, stem_filters=32, stem_stride=1,
        first_filters=16,
        stages=(Stage(24, 2, 1), Stage(32, 3, 2), Stage(64, 4, 2), Stage(96, 3, 1),
                Stage(160, 3, 2), Stage(320, 1, 1)),
        head_filters=1280, kernels=(3, 5), expansions=(3, 6)),
    # Small enough to search and train in seconds on 2 CPU cores (digits, 16x16 inputs).
    "tiny": SearchSpace(
        name="tiny", input_size=16, num_classes=10, stem_filters=8, stem_stride=1,
        first_filters=8,
        stages=(Stage(16, 2, 2), Stage(24, 2, 2), Stage(32, 1, 1)),
        head_filters=64, kernels=(3, 5), expansions=(3, 6)),
    # Fashion-MNIST / MNIST-sized (28x28 grayscale, stride-2 stem): big enough that
    # architectures differ in accuracy, small enough to train one in a minute or two on 2 CPU
    # cores (10,000 images, 5 epochs).
    "fashion": SearchSpace(
        name="fashion", input_size=28, input_channels=1, num_classes=10, stem_filters=16,
        stem_stride=2, first_filters=16,
        stages=(Stage(24, 2, 2), Stage(40, 3, 2), Stage(64, 2, 1)),
        head_filters=256, kernels=(3, 5), expansions=(3, 6)),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def get_space(name: str, **overrides: Any) -> SearchSpace:
    """A preset by name, with optional field overrides (e.g. `width_multiplier=0.35`).

    Overrides that are None are ignored, so unset command-line flags can be passed as is."""
    if name not in _PRESETS:
        raise TfnasError(f"unknown search space {name!r}: choose one of "
                         f"{', '.join(PRESET_NAMES)}")
    overrides = {key: value for key, value in overrides.items() if value is not None}
    space = _PRESETS[name]
    return space.replace(**overrides) if overrides else space
