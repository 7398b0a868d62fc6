"""The entry points' ending (`tfnas.cli.run`): a finished command skips the interpreter's
teardown, and loses nothing a clean exit would have written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import ROOT

PROGRAM = textwrap.dedent("""
    import atexit, os, sys
    from pathlib import Path
    from tfnas import cli

    class Torn:
        def __del__(self):  # runs in the interpreter's teardown only
            sys.stderr.write("torn down\\n")

    kept = Torn()

    def main(argv):
        atexit.register(lambda: Path(os.environ["MARKER"]).write_text("atexit ran"))
        sys.stdout.write("unflushed output")  # no newline, no flush: still in the buffer
        return int(os.environ["CODE"])

    if __name__ == "__main__":
        cli.run(main)
""")


def _run(tmp_path, code: int) -> subprocess.CompletedProcess:
    script = tmp_path / "entry.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "MARKER": str(tmp_path / f"atexit_{code}.txt"), "CODE": str(code),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)


def test_a_finished_command_skips_teardown_but_runs_atexit_and_flushes(tmp_path):
    done = _run(tmp_path, 0)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "unflushed output"
    assert (tmp_path / "atexit_0.txt").read_text() == "atexit ran"
    assert "torn down" not in done.stderr  # the teardown was skipped


def test_a_failed_command_exits_as_before(tmp_path):
    failed = _run(tmp_path, 3)
    assert failed.returncode == 3
    assert failed.stdout == "unflushed output"
    assert (tmp_path / "atexit_3.txt").read_text() == "atexit ran"
    assert "torn down" in failed.stderr  # a normal exit: the teardown ran
