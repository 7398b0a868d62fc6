"""Files written whole and input files identified: what every stage that writes or reads a
run's files shares (docs/design.md, rule 6)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

HASH_LIMIT = 1 << 30  # files up to 1 GiB are hashed; larger ones by size and mtime


def write_text(path: str | Path, text: str) -> None:
    """Replaces `path` with `text` atomically: readers see the old file or the new one."""
    write_bytes(path, text.encode())


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replaces `path` with `data` atomically: readers see the old file or the new one."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with temp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def fingerprint(path: str | Path) -> dict[str, Any]:
    """What identifies an input file's contents: size and SHA-256 (a folder: its files'
    count and total size)."""
    path = Path(path)
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    size = path.stat().st_size
    if size > HASH_LIMIT:
        return {"bytes": size, "mtime": path.stat().st_mtime_ns}
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": size, "sha256": digest.hexdigest()}
