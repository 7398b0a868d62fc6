"""bench/bad_inputs.py: every entry point's bad inputs are one line, exit code 2, no
traceback (issue 18, must-show 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow  # about a minute: 47 commands, each starting Python (most TensorFlow)
def test_every_bad_input_of_every_entry_point_is_one_line():
    out = subprocess.run([sys.executable, "bench/bad_inputs.py"], capture_output=True,
                         text=True, timeout=1200, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "47 bad inputs, 47 of them one line with exit code 2 and no traceback" in out.stdout
