"""Helpers for the `colab/` notebooks: run a tfnas command with its output shown live, and
import TensorFlow without its start-up chatter.

In a notebook, `!python -m tfnas.search ...` neither stops the notebook when the command fails
nor reliably streams a subprocess's output; `sh` does both, in Jupyter, Colab and a terminal.
"""

from __future__ import annotations

import codecs
import os
import shlex
import subprocess
import sys
from typing import Sequence


def sh(command: str | Sequence[str], *, env: dict[str, str] | None = None) -> None:
    """Runs `command` (one command line, split like a shell would but without pipes or
    redirection, or an argument list), copying its stdout and stderr to
    this process's stdout as they come (carriage returns kept, so progress bars redraw), and
    raises `subprocess.CalledProcessError` if it exits with a non-zero code.

    A leading `python` runs this interpreter (`sys.executable`), the one tfnas is installed in.
    `env` adds variables to the inherited environment.
    """
    args = shlex.split(command) if isinstance(command, str) else list(command)
    if args and args[0] == "python":
        args[0] = sys.executable
    print("$ " + (command if isinstance(command, str) else shlex.join(args)), flush=True)
    # shown live: progress bars redraw (tfnas.quiet.live_progress)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TFNAS_PROGRESS": "1", **(env or {})}
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=child_env) as process:
        assert process.stdout is not None
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # λ split in two reads
        while chunk := process.stdout.read1(4096):
            sys.stdout.write(decoder.decode(chunk))
            sys.stdout.flush()
        code = process.wait()
    if code:
        raise subprocess.CalledProcessError(code, args)


def quiet_tensorflow() -> None:
    """Imports TensorFlow with its C++ start-up logs captured (shown only if the import fails)
    and its Python logger at WARNING, so notebook cells show tfnas' output, not TensorFlow's
    INFO lines (e.g. "Assets written to ..." for every TFLite export)."""
    import logging

    from tfnas.cli import import_tensorflow_quietly
    from tfnas.quiet import silence_tensorflow

    silence_tensorflow()
    import_tensorflow_quietly()
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
