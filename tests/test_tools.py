"""The command-line tools end to end: make_arch → export_tflite → benchmark, and bad input."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines, run_tool
from tfnas.deploy.export import read_architecture
from tfnas.space import Architecture


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tools")
    arch_path, model_path = folder / "arch.json", folder / "net.tflite"
    made = run_tool("make_arch.py", "--space=tiny", "--sample_seed=3", f"--out={arch_path}")
    assert made.returncode == 0, made.stderr
    done = run_tool("export_tflite.py", f"--arch={arch_path}", f"--out={model_path}",
                    "--quantize=int8", "--calibration_samples=20")
    assert done.returncode == 0, done.stderr
    assert "Saved artifact" not in done.stdout + done.stderr
    return folder, arch_path, model_path


def test_export_embeds_the_architecture_it_was_given(exported):
    _, arch_path, model_path = exported
    assert read_architecture(model_path) == Architecture.load(arch_path)


def test_benchmark_json_reports_every_model(exported):
    _, arch_path, model_path = exported
    out = run_tool("benchmark.py", f"--model={model_path}", f"--model={model_path}",
                   "--runs=15", "--warmup=2", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # stdout is pure JSON
    assert report["device"]["threads"] == 1
    assert len(report["models"]) == 2
    for row in report["models"]:
        assert row["runs"] == 15
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert {"mean_ms", "std_ms", "size_bytes"} <= set(row)
        assert row["params"] == Architecture.load(arch_path).params()


def test_benchmark_table_compares_models(exported):
    _, _, model_path = exported
    out = run_tool("benchmark.py", f"--model={model_path}", "--runs=5", "--warmup=0")
    assert out.returncode == 0, out.stderr
    assert "median ms" in out.stdout and "1.000" in out.stdout


@pytest.mark.parametrize("script,args,message", [
    ("benchmark.py", ["--model=/nonexistent/x.tflite"], "does not exist"),
    ("benchmark.py", ["--model={junk}"], "not a .tflite model"),
    ("benchmark.py", ["--model={model}", "--device=phone"], "unknown device"),
    ("benchmark.py", ["--model={model}", "--runs=0"], "--runs"),
    ("benchmark.py", [], "--model"),
    ("benchmark.py", ["--model={model}", "--bogus_flag=1"], "bogus_flag"),
    ("benchmark.py", ["--model={model}", "{model}"], "unexpected arguments"),
    ("export_tflite.py", ["--arch={arch}", "--out={folder}/x.tflite", "--quantize=int4"],
     "--quantize"),
    ("export_tflite.py", ["--arch={junk}", "--out={folder}/x.tflite"], "malformed"),
    ("export_tflite.py", ["--out={folder}/x.tflite"], "--arch"),
    ("export_tflite.py", ["--model={junk}", "--out={folder}/x.tflite"], "could not load"),
    ("make_arch.py", ["--space=huge", "--op=skip"], "unknown search space"),
    ("make_arch.py", ["--space=tiny", "--op=skip"], "not allowed at layer 0"),
    ("make_arch.py", ["--space=tiny", "--op=conv5"], "unknown op"),
    ("make_arch.py", ["--genotype=darts_v3"], "unknown genotype 'darts_v3'"),
    ("make_arch.py", ["--genotype={junk}"], "malformed genotype text"),
    ("make_arch.py", ["--genotype=darts_v2", "--cells=2"], "at least 3 cells"),
    ("make_arch.py", ["--genotype=darts_v2", "--space=tiny"], "unknown cell network 'tiny'"),
    ("make_arch.py", ["--genotype=darts_v2", "--sample_seed=1"], "leave out --op"),
    # issue 18: outputs and tables checked before any work (defects 5 and 6)
    ("export_tflite.py", ["--arch={arch}", "--out={folder}"], "is a directory: give a file"),
    ("validate_latency.py", ["--latency_table={table}", "--out={junk}"],
     "is a file, not a directory"),
    ("train_predictor.py", ["--space=cifar", "--latency_table={table}", "--out={folder}/p.json",
                            "--num_archs=5"], "has no rows for"),
    # issue 21: cell networks' predictors
    ("train_predictor.py", ["--space=darts28", "--latency_table={table}",
                            "--out={folder}/p.json"], "is not a tfnas cell latency table"),
    ("build_lut.py", ["--space=tiny", "--nodes=3", "--out={folder}/t.json"],
     "--calibration_dataset, --nodes and --cell_sampling are for networks of DARTS cells"),
    ("build_lut.py", ["--space=darts28", "--calibration_dataset={junk}",
                      "--out={folder}/t.json"], "malformed latency dataset"),
    ("train_predictor.py", ["--space=tiny", "--reduce_cell", "--out={folder}/p.json"],
     "--reduce_cell, --nodes and --cell_sampling are for networks of DARTS cells"),
    ("validate_latency.py", ["--space=darts28", "--latency_table={table}",
                             "--cell_sampling=skewed", "--out={folder}/v"],
     "--cell_sampling=skewed: value should be one of <uniform|mixed>"),
])
def test_bad_input_is_one_line_and_exit_code_2(exported, script, args, message):
    folder, arch_path, model_path = exported
    junk = folder / "junk.txt"
    junk.write_text("not a model { nor json")
    table = folder / "tiny_lut.json"
    if not table.exists():
        from tfnas.latency.table import LatencyTable
        from tfnas.space import get_space

        LatencyTable.from_flops(get_space("tiny"), ms_per_mflop=1.0).save(table)
    args = [a.format(model=model_path, arch=arch_path, junk=junk, folder=folder, table=table)
            for a in args]
    out = run_tool(script, *args)
    assert out.returncode == 2, out.stderr
    lines = error_lines(out.stderr)
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in out.stderr
    assert not (folder / "p.dataset.json").exists()  # nothing measured before the check
