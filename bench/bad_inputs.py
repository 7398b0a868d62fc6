"""Every entry point fed bad input: the exit code, how many lines it printed on stderr, and
whether any output holds a Python traceback.

    python bench/bad_inputs.py [--only=search,train] [--json=bad_inputs.json]

Builds its fixtures in a temporary folder (junk files, damaged images, npz files with missing
keys, labels out of range or the wrong channels, a saved untrained model and its .tflite, a
finished one-epoch search to rerun with other flags), runs each case as a user would and
prints one row per case. Every case must exit with code 2 and one `error:` line, without a
traceback; the script exits 1 (listing them) if any does not. About 3 minutes on 2 cores
(most of it TensorFlow starting once per case).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import flags

from tfnas import cli

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_list("only", None, "Only the cases of these entry points (search, train, sweep, "
                  "export_tflite, evaluate_tflite, validate_latency, train_predictor, "
                  "build_lut, benchmark, make_arch).")
flags.DEFINE_string("json", None, "Also write the table as JSON here.")

SEARCH = ["-m", "tfnas.search", "--space=tiny", "--dataset=digits", "--batch_size=64",
          "--warmup_epochs=0", "--kernel_dropout=0", "--dropout_epochs=0", "--epochs=1"]


def _fixtures(root: Path) -> dict[str, str]:
    """Files the cases point at (paths as strings, for str.format)."""
    from PIL import Image

    from tfnas.deploy import export
    from tfnas import nets
    from tfnas.space import Architecture, Op, get_space

    f: dict[str, str] = {"root": str(root)}
    (root / "junk.txt").write_text("not what it should be\n")
    f["junk"] = str(root / "junk.txt")
    f["dir"] = str(root)
    f["missing"] = str(root / "missing.json")
    tiny = get_space("tiny")
    arch, other = Architecture.uniform(tiny, Op(3, 6)), Architecture.uniform(tiny, Op(5, 3))
    arch.save(root / "arch.json")
    other.save(root / "other.json")
    f["arch"], f["other"] = str(root / "arch.json"), str(root / "other.json")
    model = nets.build(arch)
    model.save(root / "model.keras")
    f["model"] = str(root / "model.keras")
    (root / "net.tflite").write_bytes(export.to_tflite(model, arch=arch))
    f["tflite"] = str(root / "net.tflite")
    rng = np.random.default_rng(0)
    for name, classes, damaged in (("images", 10, False), ("two_classes", 2, False),
                                   ("damaged", 10, True)):
        for c in range(classes):
            (root / name / f"c{c}").mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                    root / name / f"c{c}" / f"{i}.png")
        if damaged:
            bad = root / name / "c3" / "1.png"
            bad.write_bytes(bad.read_bytes()[:60])
        f[name] = str(root / name)

    def npz(name: str, **changes: object) -> None:
        arrays = {"x_train": rng.integers(0, 255, (64, 16, 16), dtype=np.uint8),
                  "y_train": rng.integers(0, 10, 64), "x_test": rng.integers(
                      0, 255, (16, 16, 16), dtype=np.uint8), "y_test": rng.integers(0, 10, 16)}
        arrays.update(changes)
        np.savez(root / f"{name}.npz", **{k: v for k, v in arrays.items() if v is not None})
        f[f"npz_{name}"] = str(root / f"{name}.npz")

    npz("no_y_test", y_test=None)
    npz("labels", y_train=np.full(64, 12))
    npz("rgb", x_train=np.zeros((64, 16, 16, 3), np.uint8),
        x_test=np.zeros((16, 16, 16, 3), np.uint8))
    (root / "flags_dir").mkdir()
    f["flags_dir"] = str(root / "flags_dir")
    # a finished one-epoch search, to rerun with other flags
    done = subprocess.run([sys.executable, *SEARCH, "--lam=0.3", f"--model_dir={root}/run"],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"could not build the finished search: {done.stderr[-500:]}")
    f["run"] = str(root / "run")
    return f


def _tool(name: str) -> list[str]:
    return [f"tools/{name}.py"]


CASES: list[tuple[str, str, list[str]]] = [
    # (entry point, kind of bad input, arguments after the program)
    ("search", "negative target", SEARCH + ["--target_ms=-1"]),
    ("search", "unknown space", SEARCH + ["--space=huge"]),
    ("search", "unknown dataset", SEARCH + ["--dataset=mnist"]),
    ("search", "npz without y_test", SEARCH + ["--dataset=npz:{npz_no_y_test}"]),
    ("search", "npz labels out of range", SEARCH + ["--dataset=npz:{npz_labels}"]),
    ("search", "npz RGB for a 1-channel space", SEARCH + [
        "--dataset=npz:{npz_rgb}", "--input_channels=1"]),
    ("search", "damaged image in a folder", SEARCH + ["--dataset=folder:{damaged}"]),
    ("search", "folder with 2 classes, space 10", SEARCH + ["--dataset=folder:{two_classes}"]),
    ("search", "--model_dir is a file", SEARCH + ["--model_dir={junk}"]),
    ("search", "--device with a built-in table", SEARCH + [
        "--device=local", "--latency_table=pixel1", "--model_dir={root}/x"]),
    ("search", "--latency_table is a folder", SEARCH + ["--latency_table={dir}"]),
    ("search", "--latency_table is junk", SEARCH + ["--latency_table={junk}"]),
    ("search", "missing --flagfile", ["-m", "tfnas.search", "--flagfile={missing}"]),
    ("search", "--flagfile is a folder", ["-m", "tfnas.search", "--flagfile={flags_dir}"]),
    ("search", "bad --train_* flag", SEARCH + ["--train_after_search", "--train_epochs=1"]),
    ("search", "rerun with other flags", SEARCH + ["--lam=0.2", "--model_dir={run}"]),
    ("search", "missing predictor", SEARCH + ["--latency_model=predictor:{missing}"]),
    ("search", "positional argument", SEARCH + ["extra"]),
    ("search", "not a number", SEARCH + ["--epochs=abc"]),
    ("search", "--target_fraction out of [0, 1]", SEARCH + ["--target_fraction=2"]),
    ("search", "unknown flag", SEARCH + ["--epoch=3"]),
    ("train", "missing --arch", ["-m", "tfnas.train", "--arch={missing}",
                                 "--model_dir={root}/t"]),
    ("train", "--arch is a folder", ["-m", "tfnas.train", "--arch={dir}", "--model_dir={root}/t"]),
    ("train", "--arch is junk", ["-m", "tfnas.train", "--arch={junk}", "--model_dir={root}/t"]),
    ("train", "--model_dir is a file", ["-m", "tfnas.train", "--arch={arch}",
                                        "--model_dir={junk}"]),
    ("train", "damaged image in a folder", ["-m", "tfnas.train", "--arch={arch}",
                                            "--dataset=folder:{damaged}", "--model_dir={root}/t"]),
    ("train", "--epochs=0", ["-m", "tfnas.train", "--arch={arch}", "--epochs=0",
                             "--model_dir={root}/t"]),
    ("train", "no --model_dir", ["-m", "tfnas.train", "--arch={arch}"]),
    ("sweep", "target fraction 2", ["-m", "tfnas.sweep", "--space=tiny", "--dataset=digits",
                                    "--target_fractions=0.5,2", "--model_dir={root}/s"]),
    ("sweep", "targets not numbers", ["-m", "tfnas.sweep", "--space=tiny", "--dataset=digits",
                                      "--targets_ms=abc", "--model_dir={root}/s"]),
    ("export_tflite", "--arch that is not the model's", _tool("export_tflite") + [
        "--model={model}", "--arch={other}", "--out={root}/e.tflite"]),
    ("export_tflite", "--out is a folder", _tool("export_tflite") + ["--arch={arch}",
                                                                     "--out={dir}"]),
    ("export_tflite", "--model is junk", _tool("export_tflite") + ["--model={junk}",
                                                                   "--out={root}/e.tflite"]),
    ("export_tflite", "damaged calibration images", _tool("export_tflite") + [
        "--arch={arch}", "--quantize=int8", "--calibration_dataset=folder:{damaged}",
        "--out={root}/e.tflite"]),
    ("evaluate_tflite", "2-class folder for a 10-class model", _tool("evaluate_tflite") + [
        "--model={tflite}", "--dataset=folder:{two_classes}"]),
    ("evaluate_tflite", "--model is junk", _tool("evaluate_tflite") + ["--model={junk}"]),
    ("evaluate_tflite", "damaged image in a folder", _tool("evaluate_tflite") + [
        "--model={tflite}", "--dataset=folder:{damaged}"]),
    ("validate_latency", "--out is a file", _tool("validate_latency") + [
        "--latency_table={missing}", "--out={junk}"]),
    ("validate_latency", "missing table", _tool("validate_latency") + [
        "--latency_table={missing}", "--out={root}/v"]),
    ("train_predictor", "--out is a folder", _tool("train_predictor") + ["--out={dir}"]),
    ("train_predictor", "bad --hidden", _tool("train_predictor") + ["--hidden=0",
                                                                    "--out={root}/p.json"]),
    ("build_lut", "--out is a folder", _tool("build_lut") + ["--out={dir}"]),
    ("build_lut", "unknown device", _tool("build_lut") + ["--device=phone",
                                                          "--out={root}/l.json"]),
    ("benchmark", "--model is junk", _tool("benchmark") + ["--model={junk}"]),
    ("benchmark", "missing --model", _tool("benchmark") + ["--model={missing}"]),
    ("make_arch", "unknown op", _tool("make_arch") + ["--space=tiny", "--op=conv9"]),
    ("make_arch", "--out is a folder", _tool("make_arch") + ["--space=tiny",
                                                             "--op=mbconv_k3_e6", "--out={dir}"]),
]


def main(argv: list[str]) -> None:
    began = time.time()
    cases = [c for c in CASES if not FLAGS.only or c[0] in FLAGS.only]
    rows, bad = [], []
    with tempfile.TemporaryDirectory() as folder:
        print("building fixtures (one finished search included)...", flush=True)
        fixtures = _fixtures(Path(folder))
        print(f"{'entry point':16s} {'bad input':38s} {'exit':>4s} {'lines':>5s}  traceback  "
              "first line")
        for entry, kind, args in cases:
            command = [sys.executable, *[a.format(**fixtures) for a in args]]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                  timeout=600)
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            traceback = "Traceback" in done.stderr + done.stdout
            row = {"entry": entry, "input": kind, "exit": done.returncode, "lines": len(lines),
                   "traceback": traceback, "message": lines[0] if lines else ""}
            rows.append(row)
            if done.returncode != 2 or len(lines) != 1 or traceback:
                bad.append(row)
            shown = row["message"].replace(folder, "TMP")
            print(f"{entry:16s} {kind[:38]:38s} {done.returncode:4d} {len(lines):5d}  "
                  f"{'YES' if traceback else 'no':9s}  {shown[:110]}", flush=True)
    if FLAGS.json:
        Path(FLAGS.json).write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{len(rows)} bad inputs, {len(rows) - len(bad)} of them one line with exit code 2 "
          f"and no traceback; {time.time() - began:.0f} s")
    if bad:
        for row in bad:
            print(f"NOT ONE LINE: {row['entry']}: {row['input']}")
        raise SystemExit(1)


if __name__ == "__main__":
    cli.run(main)
