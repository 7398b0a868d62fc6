"""Quantized exports of a trained network: post-training int8 calibrated on real images and
quantization-aware training keep digits accuracy; the evaluation tool reads them."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines, run_tool


@pytest.mark.slow  # 2.5 min: a QAT fine-tune and three conversions
def test_int8_and_qat_exports_keep_the_float_accuracy(trained_tiny):
    trained = trained_tiny
    paths = {}
    for mode in ("none", "int8", "qat"):
        paths[mode] = trained / f"net_{mode}.tflite"
        out = run_tool("export_tflite.py", f"--model={trained / 'model.keras'}",
                       f"--quantize={mode}", "--calibration_dataset=digits", "--qat_epochs=1",
                       f"--out={paths[mode]}", timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
    out = run_tool("evaluate_tflite.py", *(f"--model={p}" for p in paths.values()),
                   "--dataset=digits", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    top1 = {mode: row["top1"] for mode, row in zip(paths, json.loads(out.stdout)["models"])}
    report = json.loads((trained / "train_report.json").read_text())
    assert top1["none"] == pytest.approx(report["top1"], abs=1e-6)  # the same network
    assert top1["none"] > 0.9
    assert abs(top1["int8"] - top1["none"]) <= 0.02 and abs(top1["qat"] - top1["none"]) <= 0.02
    sizes = {mode: p.stat().st_size for mode, p in paths.items()}
    assert sizes["int8"] < 0.7 * sizes["none"] and sizes["qat"] < 0.7 * sizes["none"]


def test_qat_needs_a_trained_model_and_data(tmp_path):
    out = run_tool("export_tflite.py", "--arch=tests/fixtures/none.json", "--quantize=qat",
                   f"--out={tmp_path / 'x.tflite'}")
    assert out.returncode == 2
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and "--quantize=qat fine-tunes a trained network" in lines[0]
