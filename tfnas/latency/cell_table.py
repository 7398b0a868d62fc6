"""A per-edge latency table of a network of DARTS cells: what a lookup table makes of cells.

Every distinct edge (`EdgeSignature`: op, channels, size, stride) is timed alone, as a .tflite
holding that op only (`tfnas.latency.timing_models.cell_edge`), and the network of
placeholder cells (skip connections alone, `placeholder_genotype`) is timed whole. A network's
latency is then the placeholder's less its edges plus the rows of its own edges
(`raw_ms`; as a cost source, `tfnas.costs.CellCost.from_table`; an identity edge costs 0 ms, it adds no op to a
TFLite network): a sum of op latencies, as the LUTs of FBNet and
ProxylessNAS price layers. It cannot see the wiring (which nodes feed which, the concat, the
memory an edge's input stays alive), which is LA-DARTS' reason for a learned predictor
(Xu et al. 2020, Sec. 3.2); `tools/validate_latency.py` measures the difference. Like a layer
table, it can be calibrated (measured ≈ a · sum + b) on whole networks measured in its units.

JSON: {"format": "tfnas.cell_latency_table/1", "network": {...}, "nodes": 4, "rows":
[{"op", "channels", "height", "width", "stride", "ms"}], "network_ms": ..., "device": {...},
"calibration": {"archs": [...], "measured_ms": [...], "scale", "offset"}}.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from tfnas.errors import TfnasError, missing_file
from tfnas.latency import timing_models
from tfnas.latency.meter import Meter
from tfnas.latency.profiler import measure_networks, measure_with_progress
from tfnas.run.files import write_text
from tfnas.space.cells import (CELL_OPS, INPUT_NODES, CellArchitecture, CellNetwork,
                               EdgeSignature, placeholder_genotype)

FORMAT = "tfnas.cell_latency_table/1"


@dataclasses.dataclass
class CellLatencyTable:
    """ms of every edge of a network of cells alone, and of its placeholder network."""

    network: CellNetwork
    nodes: int
    rows: dict[EdgeSignature, float]
    network_ms: float | None  # the placeholder network, whole
    device: dict[str, Any]  # device, threads, and the meter's units (`Meter.describe`)
    calibration: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return "scale" in self.calibration

    def check_for(self, network: CellNetwork, nodes: int, name: str, hint: str = "") -> None:
        """One error (naming the table `name`, ending with `hint`) unless this is the table
        of `network` with cells of `nodes` nodes."""
        if self.network != network or self.nodes != nodes:
            raise TfnasError(f"{name} is the table of another network of cells "
                             f"({describe(self.network, self.nodes)}), not of "
                             f"{describe(network, nodes)}" + (f": {hint}" if hint else ""))

    def check_complete(self) -> None:
        """One error when an edge or the placeholder network is still to be timed."""
        missing = [s for s in signatures(self.network, self.nodes) if s not in self.rows]
        if missing or self.network_ms is None:
            raise TfnasError(f"the cell latency table misses {len(missing)} edges"
                             + ("" if self.network_ms is not None else " and its network")
                             + ": complete it with tools/build_lut.py")

    def linear(self, calibrated: bool = True) -> tuple[float, float]:
        """(a, b) of measured ≈ a · sum + b: the calibration's, or (1, 0) raw."""
        if calibrated and self.calibrated:
            return self.calibration["scale"], self.calibration["offset"]
        return 1.0, 0.0

    def raw_ms(self, arch: CellArchitecture) -> float:
        """The uncalibrated sum: the placeholder network, less its edges, plus `arch`'s."""
        self.check_complete()
        placeholder = CellArchitecture(self.network, placeholder_genotype(self.nodes))

        def edges(a: CellArchitecture) -> float:
            return sum(self.rows[plan.edge(e)] for plan in a.plan()
                       for e in range(len(plan.cell.edges)))

        return float(self.network_ms) - edges(placeholder) + edges(arch)

    def fit_calibration(self, archs: list[CellArchitecture], measured_ms: list[float]) -> None:
        """measured ≈ scale · (sum of rows) + offset, least squares over `archs`."""
        x = np.array([self.raw_ms(a) for a in archs])
        if len(archs) < 2 or np.ptp(x) == 0:
            raise TfnasError("calibrating a cell latency table needs 2 or more networks of "
                             "different latency")
        scale, offset = np.polyfit(x, np.asarray(measured_ms, float), 1)
        self.calibration.update(archs=[a.genotype.to_dict() for a in archs],
                                measured_ms=[float(m) for m in measured_ms],
                                scale=float(scale), offset=float(offset))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "network": self.network.to_dict(), "nodes": self.nodes,
                "rows": [{**dataclasses.asdict(sig), "ms": ms} for sig, ms in self.rows.items()],
                "network_ms": self.network_ms, "device": self.device,
                "calibration": self.calibration}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "CellLatencyTable":
        path = Path(path)
        if not path.is_file():
            raise missing_file(path, "cell latency table",
                               "build one with python tools/build_lut.py --space=darts28 ...")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise TfnasError(f"malformed cell latency table {path}: {err}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TfnasError(f"{path} is not a tfnas cell latency table")
        try:
            rows = {EdgeSignature(r["op"], int(r["channels"]), int(r["height"]),
                                  int(r["width"]), int(r["stride"])): float(r["ms"])
                    for r in data["rows"]}
            return cls(CellNetwork.from_dict(data["network"]), int(data["nodes"]), rows,
                       data["network_ms"], dict(data["device"]),
                       dict(data.get("calibration", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise TfnasError(f"malformed cell latency table {path}: {err}") from None


def describe(network: CellNetwork, nodes: int) -> str:
    """A network of cells in one phrase, for messages."""
    return (f"{network.name}: {network.cells} cells, C={network.init_channels}, "
            f"{network.input_size}x{network.input_size}, {nodes}-node cells")


def is_cell_table(path: str | Path) -> bool:
    """Whether the JSON file at `path` is a cell latency table (not a layer table)."""
    try:
        return json.loads(Path(path).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def signatures(network: CellNetwork, nodes: int) -> list[EdgeSignature]:
    """Every distinct edge of `network`'s cells of `nodes` nodes (ops other than `none`)."""
    arch = CellArchitecture(network, placeholder_genotype(nodes))
    seen: dict[EdgeSignature, None] = {}
    for plan in arch.plan():
        for source in range(INPUT_NODES + nodes - 1):
            for op in CELL_OPS:
                if op != "none":
                    seen.setdefault(plan.signature(op, source))
    return list(seen)


def profile(network: CellNetwork, nodes: int, meter: Meter, out: str | Path, *,
            progress: bool = True) -> CellLatencyTable:
    """Times every edge missing from the table at `out` (`timing_models.cell_edge`) and
    the placeholder network (`meter.model_of`), saving after each group (resumable; the meter
    adopts the units of a table it continues)."""
    out = Path(out)
    if out.exists():
        table = CellLatencyTable.load(out)
        table.check_for(network, nodes, str(out), "choose another --out")
        meter.join(table.device, str(out))
    else:
        table = CellLatencyTable(network, nodes, {}, None,
                                 {**meter.device.describe(), "dtype": "float32"})
    for sig in signatures(network, nodes):
        if sig.op == "skip_connect" and sig.stride == 1:
            table.rows[sig] = 0.0  # the identity adds no op to a TFLite network
    todo = [s for s in signatures(network, nodes) if s not in table.rows]
    models = [timing_models.cell_edge(sig) for sig in todo]

    def row_done(index: int, ms: float, raw: Any) -> None:
        table.rows[todo[index]] = ms
        table.device.update(meter.describe())
        table.save(out)

    def label(index: int) -> str:
        s = todo[index]
        return f"{s.op} {s.channels}x{s.height}/{s.stride}: "

    measure_with_progress(meter, models, progress, "profiling edges", "rows", row_done, label)
    if table.network_ms is None:
        placeholder = CellArchitecture(network, placeholder_genotype(nodes))

        def network_done(index: int, ms: float, raw: Any) -> None:
            table.network_ms = ms
            table.device.update(meter.describe())
            table.save(out)

        measure_networks(meter, [placeholder], progress, "placeholder network", network_done)
    return table


def calibrate(table: CellLatencyTable, archs: list[CellArchitecture],
              measured_ms: list[float] | None, meter: Meter | None, out: str | Path, *,
              progress: bool = True) -> CellLatencyTable:
    """Fits the table's calibration on `archs`: with their `measured_ms` (a latency dataset
    measured in the table's units), or measured now with `meter`."""
    if measured_ms is None:
        if meter is None:
            raise TfnasError("calibrating needs measured networks or a meter")
        meter.adopt(table.device)
        measured_ms = measure_networks(meter, archs, progress, "calibrating")
    table.fit_calibration(archs, measured_ms)
    table.save(out)
    return table
