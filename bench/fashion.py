"""What the benches on Fashion-MNIST share: where the project's copy lies (users pass
--npz), subsets of it as npz files, and results cached as JSON (benches resume)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_NPZ = ROOT.parent / "shared" / "data" / "fashion_mnist" / "fashion_mnist.npz"


def subset(source: Path, out: Path, count: int, test_count: int | None = None) -> Path:
    """The first `count` training images and every test image (the first `test_count`), as
    an npz in OUT."""
    path = out / (f"fashion_{count}.npz" if test_count is None else
                  f"fashion_{count}_{test_count}.npz")
    if not path.exists():
        with np.load(source) as arrays:
            np.savez(path, x_train=arrays["x_train"][:count], y_train=arrays["y_train"][:count],
                     x_test=arrays["x_test"][:test_count], y_test=arrays["y_test"][:test_count])
    return path


def cached(path: Path, make: Callable[[], Any]) -> Any:
    """The JSON at `path`, or `make()` written there."""
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    path.write_text(json.dumps(value, indent=1) + "\n")
    return value


def dataset(npz: str, out: Path, count: int, test_count: int | None = None) -> str:
    """The `npz:PATH` dataset of a subset (`subset`) written in `out` (created), after one
    clear exit when the Fashion-MNIST file is missing."""
    source = Path(npz)
    if not source.exists():
        raise SystemExit(f"this bench needs Fashion-MNIST as an npz file at {source} (the "
                         "project's shared data folder): pass --npz=PATH")
    out.mkdir(parents=True, exist_ok=True)
    return f"npz:{subset(source, out, count, test_count)}"
