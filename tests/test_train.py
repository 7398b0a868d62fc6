"""python -m tfnas.train: a derived network learns digits, the saved model is the evaluated one,
a killed run resumes to the same result, bad flags stop with one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, error_lines, terminate_after, train_command


@pytest.fixture(scope="module")
def arch_file(tmp_path_factory):
    """The architecture `trained_tiny` trains (the bad-flag checks need no training)."""
    from tfnas.space import Architecture, Op, get_space

    path = tmp_path_factory.mktemp("arch") / "arch.json"
    Architecture.uniform(get_space("tiny"), Op(3, 6)).save(path)
    return path


def _train(arch_file, model_dir, *extra):
    return subprocess.run(train_command(arch_file, model_dir, *extra), capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


@pytest.mark.long
@pytest.mark.e2e
def test_a_killed_training_resumes_to_the_same_network(tmp_path, trained_tiny, arch_file):
    report = json.loads((trained_tiny / "train_report.json").read_text())
    assert report["top1"] > 0.9 and report["top5"] >= report["top1"]  # digits is learnt
    assert report["epochs"] == 4 and report["val_examples"] == 359
    assert "top-1" in (trained_tiny / "stdout.txt").read_text()

    rest = terminate_after(train_command(arch_file, tmp_path / "killed"), "Epoch 2/4", 0.3)
    assert "run the same command to resume" in rest
    resumed = _train(arch_file, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"resuming training: .*, from epoch [123]\n", resumed.stdout)
    again = json.loads((tmp_path / "killed" / "train_report.json").read_text())
    assert again["top1"] == report["top1"] and again["loss"] == pytest.approx(report["loss"])
    # one log row per epoch: the stopped epoch's partial row is not kept (issue 18, defect 7)
    rows = (tmp_path / "killed" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "0", "1", "2", "3"]
    # a finished run rerun is reported, not trained (nor re-evaluated) again
    rerun = _train(arch_file, tmp_path / "killed")
    assert rerun.returncode == 0 and "holds this training, finished" in rerun.stdout
    assert "resuming" not in rerun.stdout and f"top-1 {report['top1']:.4f}" in rerun.stdout

    # the saved model is the one evaluated: it gives the report's accuracy
    import keras

    from tfnas import data

    model = keras.saving.load_model(trained_tiny / "model.keras")
    val = data.load("digits", image_size=16, batch_size=64).val(drop_remainder=False)
    correct = sum(int(np.sum(np.argmax(model(x, training=False), -1) == y.numpy()))
                  for x, y in val)
    assert correct / 359 == pytest.approx(report["top1"], abs=1e-6)


@pytest.mark.long
@pytest.mark.e2e
def test_the_saved_model_loads_with_keras_alone(trained_tiny):
    """Training steps with tfnas' optimizer (`tfnas.optimizers`), but model.keras holds Keras'
    own, with its state: a user loads it without importing tfnas."""
    script = ("import json, keras; m = keras.saving.load_model(%r); o = m.optimizer; "
              "print(json.dumps([type(o).__module__, type(o).__name__, o.weight_decay, "
              "int(o.iterations.numpy()), float(abs(o.variables[2].numpy()).max())]))"
              % str(trained_tiny / "model.keras"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    module, name, weight_decay, iterations, moment = json.loads(out.stdout.splitlines()[-1])
    assert module.startswith("keras.") and name == "Adam" and weight_decay > 0  # AdamW's
    assert iterations == 4 * 22 and moment > 0  # 4 epochs of 22 steps, and its moments


@pytest.mark.long
@pytest.mark.e2e
def test_training_with_tflite_writes_the_trained_network_as_tools_export_does(trained_tiny):
    """--tflite: model.tflite beside model.keras, the same logits, the architecture inside."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from tfnas.deploy import export
    from tfnas.space import load_architecture

    report = json.loads((trained_tiny / "train_report.json").read_text())
    assert report["tflite"] == "model.tflite"
    assert "wrote " + str(trained_tiny) + "/model.keras, model.tflite and train_report.json" \
        in (trained_tiny / "stdout.txt").read_text()
    flatbuffer = (trained_tiny / "model.tflite").read_bytes()
    assert export.read_metadata(flatbuffer, export.METADATA_NAME) == load_architecture(
        trained_tiny / "arch.json").to_json(indent=None).encode()
    model = keras.saving.load_model(trained_tiny / "model.keras")
    images = export.representative_inputs(tuple(model.inputs[0].shape[1:]), 8, seed=3)
    runner = Interpreter(model_content=flatbuffer).get_signature_runner("serving_default")
    got = np.concatenate([runner(image=x[None])["output_0"] for x in images])
    assert np.abs(got - np.asarray(model(images, training=False))).max() < 1e-4


@pytest.mark.parametrize("args,message", [
    (["--epochs=0"], "epochs must be at least 1"),
    (["--learning_rate=-1"], "learning_rate must be positive"),
    (["--dataset=mnist"], "unknown dataset 'mnist'"),
    (["--optimizer=rmsprop"], "--optimizer"),
])
def test_bad_training_flags_stop_with_one_line(tmp_path, arch_file, args, message):
    out = _train(arch_file, tmp_path / "run", *args)
    assert out.returncode == 2, out.stderr
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_a_missing_architecture_file_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tfnas.train", "--arch=/nowhere/arch.json",
                          f"--model_dir={tmp_path}"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.returncode == 2
    lines = error_lines(out.stderr)
    assert len(lines) == 1 and "/nowhere/arch.json" in lines[0], lines


def test_a_training_stopped_before_its_first_epoch_ends_says_it_starts_again(tmp_path):
    """Nothing is saved before the first epoch's end: the stop message must not promise a
    checkpoint to resume from (it said "holds 0 epoch(s)")."""
    from tfnas.run.rundir import Interrupted
    from tfnas.space import Architecture, Op, get_space
    from tfnas.train.trainer import TrainConfig, train

    config = TrainConfig(Architecture.uniform(get_space("tiny"), Op(3, 3)), "digits",
                         str(tmp_path / "run"), epochs=2, verbose=False)
    with pytest.raises(Interrupted) as stopped:
        train(config, should_stop=lambda: True)
    assert "stopped during epoch 0; no epoch was finished" in str(stopped.value)
    assert "resume" not in str(stopped.value)
    assert not list((tmp_path / "run").glob("ckpt*"))
