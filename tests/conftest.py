"""Shared fixtures: quiet TensorFlow, small architectures, and exported models built once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# `python -m tfnas.search` defaults to the Single-Path NAS recipe (ImageNet, batch 1024): the
# tests' searches start from the tiny space on digits with these and override what they vary
TINY_SEARCH = ("--space=tiny", "--dataset=digits", "--batch_size=64", "--warmup_epochs=0",
               "--kernel_dropout=0", "--dropout_epochs=0")


def small_space():
    """Two searchable layers (a stride-2 one and a skippable one) on 16x16 inputs, 10 classes:
    tests that compile search steps use it (a step's graph grows with the paths of mixed ops:
    tiny's 22 paths take 40-100 s to trace and compile here, these 9 take a few seconds)."""
    from tfnas.space import SearchSpace, Stage

    return SearchSpace(name="small", input_size=16, num_classes=10, stem_filters=8,
                       stem_stride=1, first_filters=0, stages=(Stage(8, 1, 2), Stage(8, 1, 1)),
                       head_filters=16)


def run_tool(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs `python tools/<script> args...` and captures its output."""
    return subprocess.run([sys.executable, str(ROOT / "tools" / script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def terminate_after(command: list[str], line_start: str, pause: float) -> str:
    """Runs `command`, sends SIGTERM `pause` seconds after it prints a line starting with
    `line_start`, checks that it exits with 143 (stopped and saved), returns what it printed
    after that line."""
    import signal
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=ROOT, env=env)
    for line in proc.stdout:
        if line.startswith(line_start):
            break
    time.sleep(pause)
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 143, rest[-2000:]
    return rest


def search_error(*args: str, model_dir: Path | None = None) -> str:
    """The error a `python -m tfnas.search` command line (after TINY_SEARCH) stops with,
    checked in-process the way the command checks it before any work: absl's parse and
    validators, then `request_from_flags` (`cli.run` prints it as `error: ...`, exit 2)."""
    from absl import flags

    from tfnas.errors import TfnasError
    from tfnas.search.command import request_from_flags
    from tfnas.search.flags import define_flags

    values = flags.FlagValues()
    define_flags(values)
    where = [f"--model_dir={model_dir}"] if model_dir else []
    try:
        values(["tfnas.search", *TINY_SEARCH, *where, *args])
        request_from_flags(values)
    except (flags.Error, TfnasError) as err:
        return str(err)
    raise AssertionError(f"no error for {args}")


def error_lines(stderr: str) -> list[str]:
    """The non-empty lines a failing tool printed."""
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def train_command(arch_file: Path, model_dir: Path, *extra: str) -> list[str]:
    """`python -m tfnas.train` for 4 epochs on digits."""
    return [sys.executable, "-m", "tfnas.train", f"--arch={arch_file}",
            f"--model_dir={model_dir}", "--epochs=4", *extra]


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory) -> Path:
    """A MobileNetV2-like tiny network trained 4 epochs on digits (model.keras, model.tflite,
    arch.json, train_report.json), shared by the trainer and export tests."""
    from tfnas.space import Architecture, Op, get_space

    folder = tmp_path_factory.mktemp("trained_tiny")
    Architecture.uniform(get_space("tiny"), Op(3, 6)).save(folder / "arch.json")
    out = subprocess.run(train_command(folder / "arch.json", folder / "run", "--tflite"),
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    (folder / "run" / "stdout.txt").write_text(out.stdout)
    return folder / "run"


def flops_from_model(model) -> int:
    """Multiply-adds read off the built Keras layers (independent of tfnas' counting)."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            total += h * w * c_out * c_in * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
        elif isinstance(layer, keras.layers.Multiply):  # squeeze-and-excitation's scaling
            _, h, w, c = layer.output.shape
            total += h * w * c
    return total
