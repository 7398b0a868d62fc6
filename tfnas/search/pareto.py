"""Accuracy against measured latency: the Pareto front of a set of trained networks, written as
CSV / JSON and drawn as a plot (the sweep's and the search-quality bench's output)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

LATENCY, ACCURACY = "measured_ms", "top1"


def front(rows: Sequence[dict[str, Any]]) -> list[bool]:
    """For each row, whether no other row is at least as fast and as accurate and strictly
    better in one of the two (lower `measured_ms`, higher `top1`); a row without both (not
    trained, not timed) is not on the front and dominates none."""
    known = [r for r in rows if r.get(LATENCY) is not None and r.get(ACCURACY) is not None]
    flags = []
    for row in rows:
        dominated = row not in known or any(
            other[LATENCY] <= row[LATENCY] and other[ACCURACY] >= row[ACCURACY]
            and (other[LATENCY] < row[LATENCY] or other[ACCURACY] > row[ACCURACY])
            for other in known)
        flags.append(not dominated)
    return flags


def write_table(rows: Sequence[dict[str, Any]], path_stem: Path) -> None:
    """`<stem>.json` and `<stem>.csv` of the rows, with an `on_front` column; lists in a CSV
    cell are joined with spaces."""
    marked = [{**row, "on_front": on} for row, on in zip(rows, front(rows))]
    path_stem.with_suffix(".json").write_text(json.dumps(marked, indent=1) + "\n")
    fields = list(dict.fromkeys(key for row in marked for key in row))
    with path_stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
                          for k, v in row.items()} for row in marked)


def plot(rows: Sequence[dict[str, Any]], path: Path, *, group: str | None = None,
         targets: Sequence[float] = (), xlabel: str = "latency measured on the device (ms)",
         ylabel: str = "top-1 accuracy") -> None:
    """Accuracy against measured latency, one marker per `group` value (else one series), the
    front joined by a line, and `targets` as dotted vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = list(dict.fromkeys(row.get(group, "") for row in rows)) if group else [None]
    markers = "*os^dvP"
    for i, name in enumerate(groups):
        members = [r for r in rows if group is None or r.get(group, "") == name]
        ax.scatter([r[LATENCY] for r in members], [r[ACCURACY] for r in members],
                   marker=markers[i % len(markers)], s=90 if i == 0 else 36,
                   label=name or None, zorder=3)
    best = sorted((r for r, on in zip(rows, front(rows)) if on), key=lambda r: r[LATENCY])
    ax.plot([r[LATENCY] for r in best], [r[ACCURACY] for r in best], color="k", lw=0.8,
            label="Pareto front", zorder=2)
    for target in targets:
        ax.axvline(target, color="k", lw=0.5, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
