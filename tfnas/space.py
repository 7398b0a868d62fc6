"""Search spaces as data: candidate ops, searchable layers, architectures, layer signatures.

A `SearchSpace` is a plain, frozen description (no layer code), in the spirit of TuNAS'
`schema.py`: a stem, an optional fixed first MBConv, stages of (filters, layers, stride) whose
layers are searchable, and a head. Every searchable layer chooses one `Op` from the space's
candidates: MBConv with kernel k and expansion e, or `skip` where the layer keeps its shape.

An `Architecture` is a space plus one op per searchable layer (DESIGN.md rule 1). A
`LayerSignature` (input H, W, C_in, C_out, stride, op) identifies what a layer computes, so
latency tables are keyed by it rather than by layer index (rule 2).

Params and FLOPs are exact counts of the network `tfnas.nets.build` makes. FLOPs are counted as
multiply-adds, the convention of the MobileNetV2 / MnasNet / Single-Path NAS papers (MobileNetV2
1.0 at 224x224 is "300M").
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tfnas.errors import TfnasError

_MBCONV_RE = re.compile(r"^mbconv_k(\d+)_e(\d+)$")
_MBCONV_LABEL_RE = re.compile(r"^mbconv(\d+)x(\d+)-e(\d+)$")


@dataclasses.dataclass(frozen=True, order=True)
class Op:
    """A candidate op: MBConv (k x k depthwise kernel, expansion e) or skip (e == 0)."""

    kernel: int = 0
    expansion: int = 0

    def __post_init__(self) -> None:
        if self.expansion == 0:
            if self.kernel != 0:
                raise TfnasError(f"a skip op has no kernel, got kernel={self.kernel}")
        elif self.kernel < 1 or self.kernel % 2 == 0 or self.expansion < 1:
            raise TfnasError(
                f"bad MBConv op kernel={self.kernel} expansion={self.expansion}: "
                "the kernel must be odd and the expansion a positive integer")

    @property
    def is_skip(self) -> bool:
        return self.expansion == 0

    @property
    def name(self) -> str:
        """Canonical name used in JSON: `mbconv_k5_e6` or `skip`."""
        return "skip" if self.is_skip else f"mbconv_k{self.kernel}_e{self.expansion}"

    @property
    def label(self) -> str:
        """Readable name used in tables: `MBConv5x5-e6` or `Skip`."""
        if self.is_skip:
            return "Skip"
        return f"MBConv{self.kernel}x{self.kernel}-e{self.expansion}"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: "str | Op") -> "Op":
        """Reads `mbconv_k5_e6`, `MBConv5x5-e6` or `skip` (case does not matter)."""
        if isinstance(text, Op):
            return text
        if not isinstance(text, str):
            raise TfnasError(f"an op must be a string such as 'mbconv_k3_e6', got {text!r}")
        low = text.strip().lower()
        if low in ("skip", "identity"):
            return cls()
        match = _MBCONV_RE.match(low)
        if match:
            return cls(int(match.group(1)), int(match.group(2)))
        match = _MBCONV_LABEL_RE.match(low)
        if match and match.group(1) == match.group(2):
            return cls(int(match.group(1)), int(match.group(3)))
        raise TfnasError(
            f"unknown op {text!r}: expected 'skip' or 'mbconv_kK_eE' (e.g. mbconv_k3_e6, "
            "or MBConv3x3-e6)")


SKIP = Op()


def _out_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution with this stride."""
    return -(-size // stride)


@dataclasses.dataclass(frozen=True, order=True)
class LayerSignature:
    """What one searchable layer computes: input H, W, C_in, C_out, stride and op (rule 2)."""

    height: int
    width: int
    c_in: int
    c_out: int
    stride: int
    op: Op

    @property
    def key(self) -> str:
        """Stable text key for JSON tables, e.g. `112x112x16-24-s2-mbconv_k3_e6`."""
        return (f"{self.height}x{self.width}x{self.c_in}-{self.c_out}-s{self.stride}-"
                f"{self.op.name}")

    @classmethod
    def from_key(cls, key: str) -> "LayerSignature":
        match = re.match(r"^(\d+)x(\d+)x(\d+)-(\d+)-s(\d+)-(.+)$", key)
        if not match:
            raise TfnasError(f"malformed layer signature {key!r}: expected like "
                             "'112x112x16-24-s2-mbconv_k3_e6'")
        h, w, c_in, c_out, stride = (int(g) for g in match.groups()[:5])
        return cls(h, w, c_in, c_out, stride, Op.parse(match.group(6)))

    @property
    def out_height(self) -> int:
        return _out_size(self.height, self.stride)

    @property
    def out_width(self) -> int:
        return _out_size(self.width, self.stride)

    @property
    def expanded(self) -> int:
        return self.c_in * self.op.expansion

    def params(self) -> int:
        """Weights of the MBConv (convs without bias, BatchNorm with 4 per channel)."""
        if self.op.is_skip:
            return 0
        k, mid = self.op.kernel, self.expanded
        total = 0
        if self.op.expansion != 1:
            total += self.c_in * mid + 4 * mid          # 1x1 expand + BN
        total += k * k * mid + 4 * mid                  # depthwise + BN
        total += mid * self.c_out + 4 * self.c_out      # 1x1 project + BN
        return total

    def flops(self) -> int:
        """Multiply-adds of the MBConv's convolutions (BN and ReLU fold or are negligible)."""
        if self.op.is_skip:
            return 0
        k, mid = self.op.kernel, self.expanded
        hw_in = self.height * self.width
        hw_out = self.out_height * self.out_width
        total = 0
        if self.op.expansion != 1:
            total += hw_in * self.c_in * mid
        total += hw_out * k * k * mid
        total += hw_out * mid * self.c_out
        return total


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
    `first_filters`) → searchable layers of the stages → head (1x1 conv to `head_filters`, BN,
    ReLU, global average pool, dropout, dense to `num_classes`).
    """

    name: str
    input_size: int
    num_classes: int
    stem_filters: int
    stem_stride: int
    first_filters: int  # 0: no fixed first layer
    stages: tuple[Stage, ...]
    head_filters: int
    kernels: tuple[int, ...] = (3, 5)
    expansions: tuple[int, ...] = (3, 6)
    allow_skip: bool = True
    width_multiplier: float = 1.0
    input_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(
            s if isinstance(s, Stage) else Stage(**s) if isinstance(s, Mapping) else Stage(*s)
            for s in self.stages))
        object.__setattr__(self, "kernels", tuple(int(k) for k in self.kernels))
        object.__setattr__(self, "expansions", tuple(int(e) for e in self.expansions))
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
        return _out_size(self.input_size, self.stem_stride)

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
                size = _out_size(size, stride)
                c_in = c_out
        return tuple(specs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def final_size(self) -> int:
        last = self.layers[-1]
        return _out_size(last.height, last.stride)

    @functools.cached_property
    def ops(self) -> tuple[Op, ...]:
        """All candidate ops of the space, in one-hot column order: (k, e) ascending, skip last."""
        mbconvs = tuple(Op(k, e) for k in sorted(self.kernels) for e in sorted(self.expansions))
        return mbconvs + ((SKIP,) if self.allow_skip else ())

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
        first = self.first_layer.params() if self.first_layer else 0
        c_last = self.layers[-1].c_out
        head = c_last * self.head_channels + 4 * self.head_channels
        classifier = (self.head_channels + 1) * self.num_classes
        return stem + first + head + classifier

    def fixed_flops(self) -> int:
        stem = self.stem_size ** 2 * 3 * 3 * self.input_channels * self.stem_channels
        first = self.first_layer.flops() if self.first_layer else 0
        c_last = self.layers[-1].c_out
        head = self.final_size ** 2 * c_last * self.head_channels
        classifier = self.head_channels * self.num_classes
        return stem + first + head + classifier

    # --- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [dataclasses.asdict(s) for s in self.stages]
        data["kernels"] = list(self.kernels)
        data["expansions"] = list(self.expansions)
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


# The Single-Path NAS space (Stamoulis et al., Fig. 2; MnasNet/FBNet filter numbers): 22
# searchable layers, the first and last of which cannot skip. Op columns k3e3, k3e6, k5e3, k5e6
# match the published Pixel 1 runtime model's indices 0..3.
_PRESETS: dict[str, SearchSpace] = {
    "single_path": SearchSpace(
        name="single_path", input_size=224, num_classes=1000, stem_filters=32, stem_stride=2,
        first_filters=0,
        stages=(Stage(16, 1, 1), Stage(24, 4, 2), Stage(40, 4, 2), Stage(80, 4, 2),
                Stage(96, 4, 1), Stage(192, 4, 2), Stage(320, 1, 1)),
        head_filters=1280, kernels=(3, 5), expansions=(3, 6)),
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
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def get_space(name: str, **overrides: Any) -> SearchSpace:
    """A preset by name, with optional field overrides (e.g. `width_multiplier=0.35`)."""
    if name not in _PRESETS:
        raise TfnasError(f"unknown search space {name!r}: choose one of "
                         f"{', '.join(PRESET_NAMES)}")
    space = _PRESETS[name]
    return space.replace(**overrides) if overrides else space


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One network of a space: the space plus one op per searchable layer (rule 1)."""

    space: SearchSpace
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        ops = tuple(Op.parse(op) for op in self.ops)
        object.__setattr__(self, "ops", ops)
        if len(ops) != self.space.num_layers:
            raise TfnasError(
                f"the architecture has {len(ops)} ops but space {self.space.name!r} has "
                f"{self.space.num_layers} searchable layers")
        for i, op in enumerate(ops):
            allowed = self.space.candidates(i)
            if op not in allowed:
                raise TfnasError(
                    f"op {op.name} is not allowed at layer {i} of space {self.space.name!r}; "
                    f"allowed: {', '.join(o.name for o in allowed)}")

    # --- constructors ---------------------------------------------------------------------

    @classmethod
    def uniform(cls, space: SearchSpace, op: Op | str) -> "Architecture":
        """Every layer the same op (e.g. MobileNetV2-like: `mbconv_k3_e6`); it must be allowed everywhere."""
        return cls(space, tuple(Op.parse(op) for _ in range(space.num_layers)))

    @classmethod
    def sample(cls, space: SearchSpace, seed: int | np.random.Generator) -> "Architecture":
        """Uniformly random op per layer among that layer's candidates; same seed, same net."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        ops = []
        for i in range(space.num_layers):
            allowed = space.candidates(i)
            ops.append(allowed[int(rng.integers(len(allowed)))])
        return cls(space, tuple(ops))

    @classmethod
    def from_one_hot(cls, space: SearchSpace, encoding: np.ndarray) -> "Architecture":
        """Arg-max per row of an L x K encoding (columns in `space.ops` order)."""
        encoding = np.asarray(encoding)
        expected = (space.num_layers, len(space.ops))
        if encoding.shape != expected:
            raise TfnasError(f"encoding has shape {encoding.shape}, expected {expected}")
        return cls(space, tuple(space.ops[int(j)] for j in encoding.argmax(axis=1)))

    # --- encodings ------------------------------------------------------------------------

    def one_hot(self) -> np.ndarray:
        """L x K float32 one-hot matrix, K = len(space.ops)."""
        encoding = np.zeros((self.space.num_layers, len(self.space.ops)), np.float32)
        for i, op in enumerate(self.ops):
            encoding[i, self.space.ops.index(op)] = 1.0
        return encoding

    def to_dict(self) -> dict[str, Any]:
        return {"format": "tfnas.architecture/1", "space": self.space.to_dict(),
                "ops": [op.name for op in self.ops]}

    @classmethod
    def from_dict(cls, data: Any) -> "Architecture":
        if not isinstance(data, Mapping) or "space" not in data or "ops" not in data:
            raise TfnasError("an architecture JSON must be an object with 'space' and 'ops'")
        space_data = data["space"]
        space = get_space(space_data) if isinstance(space_data, str) else \
            SearchSpace.from_dict(space_data)
        ops = data["ops"]
        if not isinstance(ops, list):
            raise TfnasError("'ops' must be a list of op names")
        return cls(space, tuple(Op.parse(op) for op in ops))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TfnasError(f"malformed architecture JSON: {err}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        path = Path(path)
        if not path.is_file():
            raise TfnasError(f"architecture file {str(path)!r} does not exist")
        try:
            return cls.from_json(path.read_text())
        except TfnasError as err:
            raise TfnasError(f"{path}: {err}") from None

    # --- costs ----------------------------------------------------------------------------

    def signatures(self) -> list[LayerSignature]:
        return [self.space.signature(i, op) for i, op in enumerate(self.ops)]

    def params(self) -> int:
        """Exact parameter count of `tfnas.nets.build(self)` (equals `model.count_params()`)."""
        return self.space.fixed_params() + sum(s.params() for s in self.signatures())

    def flops(self) -> int:
        """Multiply-adds of one forward pass at batch 1."""
        return self.space.fixed_flops() + sum(s.flops() for s in self.signatures())

    def table(self) -> str:
        """A readable per-layer table with input, output, op, params and MFLOPs."""
        rows = [("layer", "input", "output", "stride", "op", "params", "MFLOPs")]
        for i, sig in enumerate(self.signatures()):
            rows.append((str(i), f"{sig.height}x{sig.width}x{sig.c_in}",
                         f"{sig.out_height}x{sig.out_width}x{sig.c_out}", str(sig.stride),
                         sig.op.label, f"{sig.params():,}", f"{sig.flops() / 1e6:.2f}"))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"space {self.space.name}, {self.space.input_size}x{self.space.input_size}"
                     f", {self.space.num_classes} classes: {self.params():,} params, "
                     f"{self.flops() / 1e6:.1f} MFLOPs (multiply-adds)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def parse_ops(text: str | Sequence[str]) -> list[Op]:
    """Ops from a comma-separated string or a list of names."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return [Op.parse(item) for item in items if str(item).strip()]
