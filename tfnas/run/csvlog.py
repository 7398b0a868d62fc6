"""CSV logs that a resumed run continues without a duplicated or torn row: rows are appended
with a newline each, a torn last line (a process killed mid-write) is ignored, and a log is cut
back to a checkpoint's position by rewriting it whole (`tfnas.run.files.write_text`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable

from tfnas.run.files import write_text


def cut(path: Path, fields: Any, keep: Callable[[dict[str, Any]], bool]
        ) -> list[dict[str, Any]]:
    """Rewrites a log (if there is one) with its whole rows that `keep` accepts: a run resumed
    from a checkpoint drops the rows written after it, and a torn last line with them, before
    it appends. Returns the rows kept."""
    rows = [row for row in read_rows(path) if keep(row)]
    if path.exists():
        rewrite_rows(path, fields, rows)
    return rows


def cut_epochs(path: Path, fields: Any, epochs: int) -> None:
    """Keeps the rows of the first `epochs` epochs of a per-epoch log (a resume from a
    checkpoint inside epoch `epochs` writes that epoch's row again)."""
    cut(path, fields, lambda row: int(row["epoch"]) < epochs)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A CSV log's whole rows (a torn last line, from a process killed mid-write, is dropped)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        text = f.read()
    complete = text if text.endswith("\n") else text[:text.rfind("\n") + 1]
    rows = list(csv.DictReader(complete.splitlines()))
    return [r for r in rows if None not in r.values() and None not in r]


def rewrite_rows(path: Path, fields: Any, rows: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    # (columns a log no longer has, e.g. those of an older version's, are dropped)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, out.getvalue())


def append_rows(path: Path, fields: Any, rows: list[dict[str, Any]]) -> None:
    """Appends CSV rows, writing the header first when the file is new."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerows(rows)
