"""A resumable file of whole networks measured on a device (a latency predictor's dataset).

JSON: {"format": "tfnas.latency_dataset/1", "space": {...}, "measurement": {device, statistic,
reference, reference_ms, ...}, "archs": [[op names per layer], ...], "measured_ms": [...]}; for
a network of DARTS cells `space` is the `CellNetwork` and each arch its genotype's JSON.
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
from tfnas.latency.meter import Meter
from tfnas.latency.profiler import measure_networks
from tfnas.space import Architecture
from tfnas.space.architecture import arch_of_record, arch_record, space_from_dict
from tfnas.space.cells import CellArchitecture, is_cell_network

FORMAT = "tfnas.latency_dataset/1"


def key(arch: Any) -> str:
    """What tells two architectures apart in a dataset (its `brief()` line)."""
    return arch.brief()


def sample(space: Any, rng: np.random.Generator, nodes: int = 4,
           sampling: str = "uniform") -> Any:
    """A uniformly random architecture of a layer space, or of a cell network (derived cells
    of `nodes` nodes, their ops drawn as `sampling` says: `tfnas.space.cells.Cell.sample`)."""
    if is_cell_network(space):
        return CellArchitecture.sample(space, rng, nodes, sampling)
    return Architecture.sample(space, rng)


def load(path: str | Path,
         space: Any) -> tuple[list[Any], list[float], dict[str, Any]]:
    """Architectures, their latencies and the measurement record of a dataset file."""
    path = Path(path)
    if not path.exists():
        return [], [], {}
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise TfnasError(f"{path} is not a tfnas latency dataset")
        if space_from_dict(data["space"]) != space:
            raise TfnasError(f"{path} holds networks of another space "
                             f"({data['space'].get('name')!r}): choose another dataset file")
        archs = [arch_of_record(space, item) for item in data["archs"]]
        return archs, [float(x) for x in data["measured_ms"]], dict(data["measurement"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise TfnasError(f"malformed latency dataset {path}: {err}") from None


def save(path: str | Path, space: Any, archs: list[Any],
         measured_ms: list[float], measurement: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [arch_record(a) for a in archs]
    write_text(path, json.dumps({
        "format": FORMAT, "space": space.to_dict(), "measurement": measurement,
        "archs": items, "measured_ms": measured_ms}) + "\n")


def sample_unique(space: Any, count: int, seed: int, exclude: set[str] = frozenset(),
                  nodes: int = 4, sampling: str = "uniform") -> list[Any]:
    """`count` distinct random architectures (`sample`), none in `exclude` (`key`s)."""
    rng = np.random.default_rng(seed)
    seen, archs = set(exclude), []
    for _ in range(count * 100):
        if len(archs) == count:
            break
        arch = sample(space, rng, nodes, sampling)
        if key(arch) not in seen:
            seen.add(key(arch))
            archs.append(arch)
    return archs


def collect(path: str | Path, space: Any, meter: Meter, count: int, *, seed: int = 0,
            progress: bool = True, nodes: int = 4,
            sampling: str = "uniform") -> tuple[list[Any], list[float]]:
    """Measures `count` seeded random architectures into the dataset at `path` (resumable)."""
    archs, measured, record = load(path, space)
    have = {key(a) for a in archs}
    todo = [a for a in sample_unique(space, count, seed, nodes=nodes, sampling=sampling)
            if key(a) not in have]
    if record and todo:  # new networks join the file's units (a complete file is any meter's)
        if record.get("anchors") != meter.describe().get("anchors"):
            raise TfnasError(f"{path} was measured against other anchor networks (another "
                             "latency table, or none): choose another dataset file")
        meter.join(record, str(path))

    def network_done(index: int, ms: float, raw: Any) -> None:
        archs.append(todo[index])
        measured.append(ms)
        save(path, space, archs, measured, {**meter.device.describe(), **meter.describe()})

    measure_networks(meter, todo, progress, on_value=network_done)
    return archs, measured
