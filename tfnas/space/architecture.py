"""Architecture: one network of a space, the type every tfnas tool speaks (docs/design.md, rule 1).

Params and FLOPs are exact counts of the network `tfnas.nets.build` makes. FLOPs are counted as
multiply-adds, the convention of the MobileNetV2 / MnasNet / Single-Path NAS papers (MobileNetV2
1.0 at 224x224 is "300M").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from tfnas.errors import TfnasError, missing_file
from tfnas.run.files import write_text
from tfnas.space.ops import LayerSignature, Op
from tfnas.space.spaces import SearchSpace, get_space

if TYPE_CHECKING:
    from tfnas.space.cells import CellArchitecture


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
        """Every layer the same op (MobileNetV2-like: `mbconv_k3_e6`); allowed everywhere."""
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
        write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        path = Path(path)
        if not path.is_file():
            raise missing_file(path, "architecture file")
        try:
            return cls.from_json(path.read_text())
        except TfnasError as err:
            raise TfnasError(f"{path}: {err}") from None

    def brief(self) -> str:
        """One line: the ops, layer by layer (the search log's `arch` column)."""
        return " ".join(op.name for op in self.ops)

    @property
    def op_names(self) -> tuple[str, ...]:
        """The op of every layer by name (how tables and datasets list architectures)."""
        return tuple(op.name for op in self.ops)

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


def architecture_from_json(text: str) -> "Architecture | CellArchitecture":
    """Either kind of architecture JSON: a layer space's (`space`, `ops`) or a cell network's
    (`network`, `genotype`; `tfnas.space.cells`)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TfnasError(f"malformed architecture JSON: {err}") from None
    return architecture_from_dict(data)


def architecture_from_dict(data: Any) -> "Architecture | CellArchitecture":
    """Either kind of architecture, from its JSON object (`to_dict`)."""
    from tfnas.space.cells import CellArchitecture

    if isinstance(data, Mapping) and "genotype" in data:
        return CellArchitecture.from_dict(data)
    return Architecture.from_dict(data)


def arch_record(arch: Any) -> Any:
    """What files of measured networks (latency datasets, table calibrations, anchors) keep
    of an architecture: a layer network's op names, a cell network's genotype."""
    from tfnas.space.cells import CellArchitecture

    if isinstance(arch, CellArchitecture):
        return arch.genotype.to_dict()
    return list(arch.op_names)


def arch_of_record(space: Any, item: Any) -> "Architecture | CellArchitecture":
    """The architecture of `space` that `arch_record` kept as `item`."""
    from tfnas.space.cells import CellArchitecture, Genotype, is_cell_network

    if is_cell_network(space):
        return CellArchitecture(space, Genotype.from_dict(item))
    return Architecture(space, tuple(item))


def space_from_dict(data: Any) -> Any:
    """Either kind of space, from its JSON object: a layer `SearchSpace` or a `CellNetwork`."""
    from tfnas.space.cells import CellNetwork

    if isinstance(data, Mapping) and "cells" in data and "init_channels" in data:
        return CellNetwork.from_dict(data)
    return SearchSpace.from_dict(data)


def load_architecture(path: str | Path) -> "Architecture | CellArchitecture":
    """An architecture file of either kind (as `tools/make_arch.py` and the search write)."""
    path = Path(path)
    if not path.is_file():
        raise missing_file(path, "architecture file")
    try:
        return architecture_from_json(path.read_text())
    except TfnasError as err:
        raise TfnasError(f"{path}: {err}") from None
