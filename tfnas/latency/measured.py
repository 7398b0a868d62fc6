"""A resumable file of whole networks measured on a device (a latency predictor's dataset).

JSON: {"format": "tfnas.latency_dataset/1", "space": {...}, "measurement": {device, statistic,
reference, reference_ms, ...}, "archs": [[op names per layer], ...], "measured_ms": [...]}.
`collect` samples architectures with a seed and measures only those not yet in the file, so an
interrupted run continues where it stopped, in the same units.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tfnas.errors import TfnasError
from tfnas.run.files import write_text
from tfnas.latency import timing_models
from tfnas.latency.meter import Meter
from tfnas.latency.profiler import measure_with_progress
from tfnas.space import Architecture, SearchSpace

FORMAT = "tfnas.latency_dataset/1"


def load(path: str | Path,
         space: SearchSpace) -> tuple[list[Architecture], list[float], dict[str, Any]]:
    """Architectures, their latencies and the measurement record of a dataset file."""
    path = Path(path)
    if not path.exists():
        return [], [], {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise TfnasError(f"{path} is not a tfnas latency dataset")
        if SearchSpace.from_dict(data["space"]) != space:
            raise TfnasError(f"{path} holds networks of another space "
                             f"({data['space'].get('name')!r}): choose another dataset file")
        archs = [Architecture(space, tuple(ops)) for ops in data["archs"]]
        return archs, [float(x) for x in data["measured_ms"]], dict(data["measurement"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise TfnasError(f"malformed latency dataset {path}: {err}") from None


def save(path: str | Path, space: SearchSpace, archs: list[Architecture],
         measured_ms: list[float], measurement: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps({
        "format": FORMAT, "space": space.to_dict(), "measurement": measurement,
        "archs": [list(a.op_names) for a in archs], "measured_ms": measured_ms}) + "\n")


def sample_unique(space: SearchSpace, count: int, seed: int,
                  exclude: set[tuple[str, ...]] = frozenset()) -> list[Architecture]:
    """`count` distinct random architectures, none in `exclude` (op-name tuples)."""
    rng = np.random.default_rng(seed)
    seen, archs = set(exclude), []
    for _ in range(count * 100):
        if len(archs) == count:
            break
        arch = Architecture.sample(space, rng)
        if arch.op_names not in seen:
            seen.add(arch.op_names)
            archs.append(arch)
    return archs


def collect(path: str | Path, space: SearchSpace, meter: Meter, count: int, *, seed: int = 0,
            progress: bool = True) -> tuple[list[Architecture], list[float]]:
    """Measures `count` seeded random architectures into the dataset at `path` (resumable)."""
    archs, measured, record = load(path, space)
    if record:
        if record.get("anchors") != meter.describe().get("anchors"):
            raise TfnasError(f"{path} was measured against other anchor networks (another "
                             "latency table, or none): choose another dataset file")
        meter.join(record, str(path))
    have = {a.op_names for a in archs}
    todo = [a for a in sample_unique(space, count, seed) if a.op_names not in have]

    def network_done(index: int, ms: float, raw: Any) -> None:
        archs.append(todo[index])
        measured.append(ms)
        save(path, space, archs, measured, {**meter.device.describe(), **meter.describe()})

    measure_with_progress(meter, [timing_models.network(a) for a in todo], progress,
                          "measuring", "networks", network_done)
    return archs, measured
