"""Keep native libraries' console chatter (TFLite converter, TensorFlow C++ logs) off the screen.

The TFLite converter writes pages of "Saved artifact ..." and MLIR diagnostics straight to file
descriptors 1 and 2, below Python's `sys.stdout`; only redirecting the descriptors catches them
(docs/design.md, rule 8). What was captured is kept and returned, so a failure can still show it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    """Text written to stdout/stderr inside a `captured_output()` block."""

    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Redirects file descriptors 1 and 2 to a temporary file for the block's duration."""
    result = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield result
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            result.text = sink.read().decode("utf-8", "replace")


def silence_tensorflow() -> None:
    """Quiets TensorFlow's C++ INFO/WARNING logs; call before TensorFlow is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def live_progress(stream: object = None) -> bool:
    """Whether progress bars redraw in place: on a terminal, or where the environment says
    the output is shown live (`TFNAS_PROGRESS=1`, set by `tfnas.notebook.sh`). Redirected to a
    file, a redrawn bar is one ever-growing line of carriage returns and terminal codes, so
    long loops print their per-epoch (or final) line only."""
    stream = stream if stream is not None else sys.stdout
    return os.environ.get("TFNAS_PROGRESS") == "1" or bool(
        getattr(stream, "isatty", lambda: False)())
