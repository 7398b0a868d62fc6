"""LatencyTable: per-signature latency rows (a LUT) plus the fixed stem/head cost.

The table's `unit` is ms for latency; a table in mJ holds energy the same way (rows per
signature, a fixed part), priced by `tfnas.costs.CostModel.from_table` like latency.

Rows are keyed by `LayerSignature` (docs/design.md, rule 2), so a table serves every space whose
layers it covers, and a missing row is a clear error naming the signatures and the command that
profiles them. The total latency of an architecture is `fixed_ms + Σ row(signature)`.

Tables come from JSON files (`load`), from the analytic FLOPs of each op (`from_flops`: a
device-free stand-in so search works before any profiling), or from the Single-Path NAS
authors' Pixel 1 runtime model shipped with tfnas (`pixel1`).
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from tfnas.errors import TfnasError, missing_file
from tfnas.run.files import write_text
from tfnas.space import Architecture, LayerSignature, SearchSpace

FORMAT = "tfnas.latency_table/1"
BUILTIN_TABLES = ("pixel1",)


@dataclasses.dataclass
class LatencyTable:
    """Latency in ms per layer signature, the fixed part's latency, and device metadata."""

    rows: dict[LayerSignature, float]
    fixed_ms: float
    device: dict[str, Any] = dataclasses.field(default_factory=dict)
    unit: str = "ms"
    fixed_parts: dict[str, float] = dataclasses.field(default_factory=dict)  # e.g. stem, head
    stats: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # per key
    # whole networks measured to calibrate the sum of rows: {"archs": [[op names]],
    # "measured_ms": [...], "scale": a, "offset": b, "per_layer": c};
    # calibrated = a · (fixed + Σ rows) + b + c · (MBConv layers)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)
    # the geometry the fixed part was measured for (`fixed_geometry`); {} when unknown
    fixed_for: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [sig.key for sig, value in self.rows.items() if not value >= 0]
        if bad or not self.fixed_ms >= 0:
            raise TfnasError(f"latency table has negative or missing values: {bad[:5]}")

    # --- look-ups -------------------------------------------------------------------------

    def missing(self, signatures: Iterable[LayerSignature]) -> list[LayerSignature]:
        return sorted({sig for sig in signatures if sig not in self.rows})

    def check_covers(self, space: SearchSpace, name: str = "the latency table") -> None:
        """Raises one clear error when any signature the space can produce has no row, or
        when the stem and head were measured for another geometry (say 1000 classes, not
        10: the fixed part is one number, not rows)."""
        self._require(space.signatures(), space, name)
        self.check_fixed(space, name)

    def check_fixed(self, space: SearchSpace, name: str = "the latency table") -> None:
        """One clear error when the fixed part was measured for another geometry."""
        ours = fixed_geometry(space)
        if self.fixed_for and self.fixed_for != ours:
            differ = ", ".join(f"{k} {self.fixed_for.get(k)}, not {v}"
                               for k, v in ours.items() if self.fixed_for.get(k) != v)
            raise TfnasError(f"{name}: its stem and head were measured for another geometry "
                             f"than space {space.name!r} ({differ}); profile a table for this "
                             f"space: python tools/build_lut.py --space={space.name} with the "
                             "same overrides")

    def _require(self, signatures: Iterable[LayerSignature], space: SearchSpace,
                 name: str) -> None:
        """One error naming the missing signatures and the command that profiles them."""
        missing = self.missing(signatures)
        if missing:
            shown = ", ".join(sig.key for sig in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise TfnasError(
                f"{name} has no rows for {len(missing)} signature(s) of space "
                f"{space.name!r} ({shown}{more}); profile them with: python tools/build_lut.py "
                f"--space={space.name} --device=local --out=lut.json")

    def cost(self, arch: Architecture) -> float:
        """Predicted latency of a whole architecture: fixed part plus its layers' rows."""
        self._require(arch.signatures(), arch.space, "the latency table")
        return self.fixed_ms + sum(self.rows[sig] for sig in arch.signatures())

    @property
    def calibrated(self) -> bool:
        return "scale" in self.calibration

    @property
    def scale(self) -> float:
        return float(self.calibration.get("scale", 1.0))

    @property
    def offset(self) -> float:
        return float(self.calibration.get("offset", 0.0))

    @property
    def per_layer(self) -> float:
        """ms the calibration adds per MBConv layer (negative: each row, timed as a model of
        its own, carries the interpreter's per-invocation overhead that a network pays once)."""
        return float(self.calibration.get("per_layer", 0.0))

    def calibrated_cost(self, arch: Architecture) -> float:
        """`cost(arch)` through the fitted correction (the raw sum when uncalibrated)."""
        return self.scale * self.cost(arch) + self.offset + self.per_layer * mbconv_layers(arch)

    def fit_calibration(self, predicted: list[float], measured: list[float],
                        layers: list[int] | None = None) -> None:
        """Least-squares measured ≈ scale · predicted + offset + per_layer · layers, `layers`
        being each network's count of MBConv layers (not skips). The per-layer term needs 6
        networks of at least two depths (and a positive scale); else measured ≈ scale ·
        predicted + offset, scale alone below 3 points."""
        import numpy as np

        x, y = np.asarray(predicted, float), np.asarray(measured, float)
        if len(x) < 1:
            raise TfnasError("calibration needs at least one measured network")
        per_layer = 0.0
        if layers is not None and len(x) >= 6 and len(set(layers)) >= 2 and np.ptp(x) > 0:
            design = np.stack([x, np.ones_like(x), np.asarray(layers, float)], axis=1)
            (scale, offset, per_layer), *_ = np.linalg.lstsq(design, y, rcond=None)
            if scale <= 0:
                per_layer = 0.0
        if per_layer == 0.0:
            if len(x) >= 3 and np.ptp(x) > 0:
                scale, offset = np.polyfit(x, y, 1)
            else:
                scale, offset = float((x @ y) / (x @ x)), 0.0
        self.calibration.update(scale=float(scale), offset=float(offset),
                                per_layer=float(per_layer))

    # --- serialisation --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {"format": FORMAT, "unit": self.unit, "device": self.device,
                "fixed_ms": self.fixed_ms,
                "rows": {sig.key: value for sig, value in sorted(self.rows.items())}}
        if self.fixed_parts:
            data["fixed_parts"] = self.fixed_parts
        if self.stats:
            data["stats"] = self.stats
        if self.calibration:
            data["calibration"] = self.calibration
        if self.fixed_for:
            data["fixed_for"] = self.fixed_for
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "LatencyTable":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise TfnasError(f"not a tfnas latency table (expected \"format\": \"{FORMAT}\")")
        try:
            rows = {LayerSignature.from_key(key): float(value)
                    for key, value in data["rows"].items()}
            return cls(rows, float(data["fixed_ms"]), dict(data.get("device", {})),
                       data.get("unit", "ms"),
                       {k: float(v) for k, v in data.get("fixed_parts", {}).items()},
                       dict(data.get("stats", {})), dict(data.get("calibration", {})),
                       dict(data.get("fixed_for", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TfnasError(f"malformed latency table: {err}") from None

    def save(self, path: str | Path) -> None:
        """Writes the table atomically (a temporary file renamed over it): a process reading
        it meanwhile, e.g. another search of a sweep, sees the old table or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """A table from a JSON file, or a built-in table by name (`pixel1`)."""
        if str(path) in BUILTIN_TABLES:
            text = resources.files("tfnas.latency").joinpath("tables", f"{path}.json")
            text = text.read_text()
        else:
            path = Path(path)
            if not path.is_file():
                raise missing_file(path, "latency table",
                                   f"built-in tables: {', '.join(BUILTIN_TABLES)}")
            text = path.read_text()
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise TfnasError(f"{path}: malformed JSON: {err}") from None

    # --- analytic tables ------------------------------------------------------------------

    @classmethod
    def from_flops(cls, space: SearchSpace, ms_per_mflop: float = 0.01,
                   unit: str = "ms") -> "LatencyTable":
        """A device-free table: each row is the op's multiply-adds times `ms_per_mflop` (per
        MFLOP in `unit`: an energy stand-in with `unit="mJ"`)."""
        rows = {sig: sig.flops() / 1e6 * ms_per_mflop for sig in space.signatures()}
        return cls(rows, space.fixed_flops() / 1e6 * ms_per_mflop,
                   {"device": "flops", f"{unit}_per_mflop": ms_per_mflop}, unit)


def fixed_geometry(space: SearchSpace) -> dict[str, Any]:
    """What the latency of a space's fixed part (stem, fixed first and last layers, head)
    depends on."""
    first, last = space.first_layer, space.last_layer
    geometry = {"input_size": space.input_size, "input_channels": space.input_channels,
                "stem_channels": space.stem_channels, "stem_stride": space.stem_stride,
                "first_layer": first.key if first is not None else None,
                "final_size": space.final_size, "last_channels": space.layers[-1].c_out,
                "head_channels": space.head_channels, "num_classes": space.num_classes}
    if last is not None:  # (tables measured before fixed last layers existed lack the key)
        geometry["last_layer"] = last.key
    return geometry


def mbconv_layers(arch: Architecture) -> int:
    """The layers of `arch` that run an MBConv (not a skip): what the calibration's per-layer
    term counts."""
    return sum(not op.is_skip for op in arch.ops)
