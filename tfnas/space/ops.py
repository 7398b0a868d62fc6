"""Candidate ops and layer signatures: what one searchable layer computes, and its cost.

An `Op` is MBConv with kernel k and expansion e (the inverted residual of MobileNetV2), with
or without squeeze-and-excitation, or `skip`. A `LayerSignature` (input H, W, C_in, C_out,
stride, op) identifies what a layer computes, so latency tables are keyed by it rather than by
layer index (docs/design.md, rule 2); its params and multiply-adds come from the op's family
module in `tfnas.blocks`, the same module that builds it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

from tfnas.blocks import family
from tfnas.errors import TfnasError

_MBCONV_RE = re.compile(r"^mbconv_k(\d+)_e(\d+)(_se)?$")
_MBCONV_LABEL_RE = re.compile(r"^mbconv(\d+)x(\d+)-e(\d+)(-se)?$")


@dataclasses.dataclass(frozen=True, order=True)
class Op:
    """A candidate op: MBConv (k x k depthwise kernel, expansion e, squeeze-and-excitation
    when `se`) or skip (e == 0)."""

    kernel: int = 0
    expansion: int = 0
    se: bool = False

    def __post_init__(self) -> None:
        if self.expansion == 0:
            if self.kernel != 0 or self.se:
                raise TfnasError(f"a skip op has no kernel nor SE, got kernel={self.kernel}")
        elif self.kernel < 1 or self.kernel % 2 == 0 or self.expansion < 1:
            raise TfnasError(
                f"bad MBConv op kernel={self.kernel} expansion={self.expansion}: "
                "the kernel must be odd and the expansion a positive integer")

    @property
    def is_skip(self) -> bool:
        return self.expansion == 0

    @property
    def name(self) -> str:
        """Canonical name used in JSON: `mbconv_k5_e6`, `mbconv_k5_e6_se` or `skip`."""
        if self.is_skip:
            return "skip"
        return f"mbconv_k{self.kernel}_e{self.expansion}" + ("_se" if self.se else "")

    @property
    def label(self) -> str:
        """Readable name used in tables: `MBConv5x5-e6`, `MBConv5x5-e6-SE` or `Skip`."""
        if self.is_skip:
            return "Skip"
        return f"MBConv{self.kernel}x{self.kernel}-e{self.expansion}" + ("-SE" if self.se else "")

    def __str__(self) -> str:
        return self.name

    @classmethod
    def parse(cls, text: "str | Op") -> "Op":
        """Reads `mbconv_k5_e6[_se]`, `MBConv5x5-e6[-SE]` or `skip` (case does not matter)."""
        if isinstance(text, Op):
            return text
        if not isinstance(text, str):
            raise TfnasError(f"an op must be a string such as 'mbconv_k3_e6', got {text!r}")
        low = text.strip().lower()
        if low in ("skip", "identity"):
            return cls()
        match = _MBCONV_RE.match(low)
        if match:
            return cls(int(match.group(1)), int(match.group(2)), bool(match.group(3)))
        match = _MBCONV_LABEL_RE.match(low)
        if match and match.group(1) == match.group(2):
            return cls(int(match.group(1)), int(match.group(3)), bool(match.group(4)))
        raise TfnasError(
            f"unknown op {text!r}: expected 'skip' or 'mbconv_kK_eE[_se]' (e.g. mbconv_k3_e6, "
            "mbconv_k5_e3_se, or MBConv3x3-e6)")


SKIP = Op()


def out_size(size: int, stride: int) -> int:
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
        return out_size(self.height, self.stride)

    @property
    def out_width(self) -> int:
        return out_size(self.width, self.stride)

    @property
    def expanded(self) -> int:
        return self.c_in * self.op.expansion

    def params(self) -> int:
        """Weights of the layer's op (`tfnas.blocks`)."""
        return family(self.op).params(self)

    def flops(self) -> int:
        """Multiply-adds of the layer's op (`tfnas.blocks`)."""
        return family(self.op).flops(self)


def parse_ops(text: str | Sequence[str]) -> list[Op]:
    """Ops from a comma-separated string or a list of names."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return [Op.parse(item) for item in items if str(item).strip()]
