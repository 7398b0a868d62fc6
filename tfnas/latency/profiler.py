"""Profile a search space on a device into a LatencyTable (Single-Path NAS Sec. 3.3 / FBNet LUT).

For every distinct `LayerSignature` of the space, one small model holding only that MBConv is
built, converted to a float32 .tflite, timed on the device (median of `runs` after `warmup`),
and written as a row. The fixed part (stem and first layer, head and classifier) is timed as
two more models. A skip row costs 0 ms: the identity adds no op to a TFLite network.

Profiling is resumable: the table is rewritten after every row, and a second run against the
same output measures only the rows still missing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from tfnas.errors import TfnasError
from tfnas.latency.devices import Device
from tfnas.latency.table import LatencyTable
from tfnas.space import Architecture, LayerSignature, SearchSpace

FIXED_KEYS = ("stem", "head")


def signature_model(sig: LayerSignature) -> Any:
    """A Keras model computing only the MBConv of `sig` (batch 1 after export)."""
    import keras

    from tfnas import nets

    inputs = keras.Input((sig.height, sig.width, sig.c_in))
    return keras.Model(inputs, nets.mbconv(inputs, keras, sig, "layer"))


def fixed_models(space: SearchSpace) -> dict[str, Any]:
    """The stem (with the fixed first layer) and the head, as two models."""
    import keras

    from tfnas import nets

    stem_in = nets.image_input(keras, space)
    size = space.final_size
    head_in = keras.Input((size, size, space.layers[-1].c_out))
    return {"stem": keras.Model(stem_in, nets.stem(stem_in, keras, space)),
            "head": keras.Model(head_in, nets.head(head_in, keras, space, dropout=0.0))}


def _measure(model: Any, device: Device, runs: int, warmup: int, folder: str) -> dict[str, float]:
    from tfnas import export

    path = Path(folder) / "model.tflite"
    path.write_bytes(export.to_tflite(model))
    result = device.benchmark(path, runs=runs, warmup=warmup)
    return {"median_ms": result.median_ms, "p90_ms": result.p90_ms, "std_ms": result.std_ms,
            "runs": result.runs}


def profile(space: SearchSpace, device: Device, out: str | Path, *, runs: int = 50,
            warmup: int = 5, progress: bool = True,
            on_row: Callable[[str, dict[str, float]], None] | None = None) -> LatencyTable:
    """Measures every missing row of `space` on `device` into the table at `out` (resumable)."""
    out = Path(out)
    meta = {**device.describe(), "dtype": "float32", "runs": runs, "warmup": warmup,
            "statistic": "median"}
    if out.exists():
        table = LatencyTable.load(out)
        known = {k: v for k, v in table.device.items() if k in ("device", "threads", "dtype")}
        if any(meta.get(k) != v for k, v in known.items()):
            raise TfnasError(f"{out} was measured on {known}, not on {meta['device']} with "
                             f"{meta['threads']} thread(s): choose another --out")
    else:
        table = LatencyTable({}, 0.0, meta, fixed_parts={})
    todo: list[tuple[str, Any]] = [
        (key, None) for key in FIXED_KEYS if key not in table.fixed_parts]
    todo += [(sig.key, sig) for sig in space.signatures() if sig not in table.rows]
    if not todo:
        return table
    bar = _progress(len(todo), progress)
    with tempfile.TemporaryDirectory() as folder:
        models = fixed_models(space) if any(sig is None for _, sig in todo) else {}
        for key, sig in todo:
            if sig is not None and sig.op.is_skip:
                stats = {"median_ms": 0.0, "p90_ms": 0.0, "std_ms": 0.0, "runs": 0}
            else:
                model = models[key] if sig is None else signature_model(sig)
                stats = _measure(model, device, runs, warmup, folder)
            if sig is None:
                table.fixed_parts[key] = stats["median_ms"]
                table.fixed_ms = sum(table.fixed_parts.values())
            else:
                table.rows[sig] = stats["median_ms"]
            table.stats[key] = stats
            table.save(out)  # every row lands on disk: an interrupted run loses at most one
            if on_row:
                on_row(key, stats)
            bar.update(1)
            bar.set_postfix_str(f"{key}: {stats['median_ms']:.3f} ms")
    bar.close()
    return table


def _progress(total: int, enabled: bool, what: str = "profiling", unit: str = "rows") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=what,
                bar_format="{desc}: {n}/{total} " + unit +
                " [{elapsed}<{remaining} left] {postfix}")


def measure_network(arch: Architecture, device: Device, *, runs: int = 50, warmup: int = 5,
                    folder: str | None = None) -> dict[str, float]:
    """Whole-network latency statistics of `arch` (float32 TFLite) on `device`."""
    from tfnas import nets

    with tempfile.TemporaryDirectory() as scratch:
        return _measure(nets.build(arch), device, runs, warmup, folder or scratch)


def calibrate(table: LatencyTable, space: SearchSpace, device: Device, out: str | Path, *,
              num_archs: int = 8, seed: int = 0, runs: int = 50, warmup: int = 5,
              progress: bool = True) -> LatencyTable:
    """Measures `num_archs` whole networks (the all-smallest, the all-largest and random ones)
    and fits the table's calibration; resumable like `profile` (networks already measured in
    the table are not measured again)."""
    import numpy as np

    from tfnas.space import Op

    if num_archs < 1:
        return table
    smallest = Architecture(space, tuple(min(space.candidates(i), key=lambda op: (
        op.expansion, op.kernel)) for i in range(space.num_layers)))
    largest = Architecture.uniform(space, Op(max(space.kernels), max(space.expansions)))
    rng = np.random.default_rng(seed)
    archs = [smallest, largest] + [Architecture.sample(space, rng) for _ in range(num_archs)]
    archs = archs[:num_archs]
    if table.calibration.get("space", space.name) != space.name:
        raise TfnasError(f"the table is calibrated for space {table.calibration['space']!r}, "
                         f"not {space.name!r}: write the calibration to a copy of the table")
    table.calibration["space"] = space.name
    done = table.calibration.setdefault("archs", [])
    measured = table.calibration.setdefault("measured_ms", [])
    todo = [a for a in archs if [op.name for op in a.ops] not in done]
    bar = _progress(len(todo), progress and bool(todo), "calibrating", "networks")
    for arch in todo:
        stats = measure_network(arch, device, runs=runs, warmup=warmup)
        done.append([op.name for op in arch.ops])
        measured.append(stats["median_ms"])
        table.save(out)
        bar.update(1)
        bar.set_postfix_str(f"{stats['median_ms']:.3f} ms")
    bar.close()
    predicted = [table.cost(Architecture(space, tuple(ops))) for ops in done]
    table.fit_calibration(predicted, measured)
    table.save(out)
    return table
