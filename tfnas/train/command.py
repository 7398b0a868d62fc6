"""`python -m tfnas.train --arch=arch.json --dataset=... --model_dir=DIR`: train a derived
network from scratch (`tfnas.train.trainer`) and write DIR/model.keras and DIR/train_report.json.

Bad flags stop with one line and exit code 2 before TensorFlow loads; a SIGTERM stops after
the current step (run the same command to resume from the last finished epoch).
"""

from __future__ import annotations

from typing import Any

from absl import flags

from tfnas import cli

FLAGS = flags.FLAGS


def define_flags(prefix: str = "", defaults: dict[str, Any] | None = None,
                 values: Any = None) -> None:
    """The training flags (into `values`, the process's FLAGS by default); the search
    defines them with prefix `train_` for --train_after_search."""
    from tfnas import cli, data
    from tfnas.train.trainer import OPTIMIZERS, TrainConfig

    flags = cli.Definer(values, __name__)
    d = {f.name: f.default for f in TrainConfig.__dataclass_fields__.values()}
    d.update(defaults or {})
    flags.DEFINE_integer(f"{prefix}epochs", d["epochs"], "Training epochs.")
    flags.DEFINE_integer(f"{prefix}batch_size", d["batch_size"], "Global batch size.")
    flags.DEFINE_enum(f"{prefix}optimizer", d["optimizer"], list(OPTIMIZERS),
                      "sgd (momentum 0.9, Nesterov) or adamw.")
    flags.DEFINE_float(f"{prefix}learning_rate", d["learning_rate"],
                       "Peak learning rate (cosine decay after a linear warm-up).")
    flags.DEFINE_float(f"{prefix}warmup_epochs", d["warmup_epochs"], "Warm-up epochs.")
    flags.DEFINE_float(f"{prefix}weight_decay", d["weight_decay"], "Decoupled weight decay.")
    flags.DEFINE_float(f"{prefix}label_smoothing", d["label_smoothing"], "Label smoothing.")
    flags.DEFINE_float(f"{prefix}dropout", d["dropout"], "Dropout before the classifier.")
    flags.DEFINE_float(f"{prefix}auxiliary_weight", d["auxiliary_weight"], "Networks of DARTS "
                       "cells with the auxiliary head: the weight of its loss (DARTS: 0.4).")
    flags.DEFINE_float(f"{prefix}drop_path", d["drop_path"], "Networks of DARTS cells: the "
                       "drop-path probability, reached in the last epoch from 0 in the first "
                       "(DARTS CIFAR: 0.2; 0: off).")
    flags.DEFINE_bool(f"{prefix}tflite", d["tflite"], "Also write model.tflite beside "
                      "model.keras: float32, the architecture embedded, as "
                      "tools/export_tflite.py writes it, without a second process's start-up.")
    if not prefix:
        flags.DEFINE_string("dataset", "digits", f"Dataset: {', '.join(data.KINDS)}.")
        flags.DEFINE_integer("seed", 0, "Seed of weights and data order.")


def config_from_flags(values: Any, arch: Any, dataset: str, model_dir: str, seed: int,
                      jit_compile: bool, prefix: str = "") -> Any:
    """A TrainConfig from the flags (with `prefix` for the search's --train_* flags)."""
    from tfnas.train.trainer import TrainConfig

    def get(name: str) -> Any:
        return getattr(values, prefix + name)

    from tfnas.errors import TfnasError

    try:
        return TrainConfig(arch=arch, dataset=dataset, model_dir=model_dir,
                           epochs=get("epochs"), batch_size=get("batch_size"),
                           optimizer=get("optimizer"), learning_rate=get("learning_rate"),
                           warmup_epochs=get("warmup_epochs"),
                           weight_decay=get("weight_decay"),
                           label_smoothing=get("label_smoothing"), dropout=get("dropout"),
                           auxiliary_weight=get("auxiliary_weight"),
                           drop_path=get("drop_path"), tflite=get("tflite"), seed=seed,
                           jit_compile=jit_compile)
    except TfnasError as err:  # name the flags: "--train_epochs must be ..."
        raise TfnasError("; ".join(f"--{prefix}{problem}"
                                   for problem in str(err).split("; "))) from None


def finished_report(run: Any, model_dir: str) -> dict[str, Any] | None:
    """The report of the training `run` (a `tfnas.run.rundir.Run`) holds finished, said in one
    line; None when it has not finished."""
    import json
    from pathlib import Path

    if not run.finished:
        return None
    print(f"{model_dir} holds this training, finished (--overwrite to train again)",
          flush=True)
    return json.loads((Path(model_dir) / "train_report.json").read_text())


def train_in(run: Any, config: Any, strategy: Any) -> dict[str, Any]:
    """Trains (or resumes) `config` in its run directory and marks the run finished; a
    SIGTERM saves and exits with 143 (`tfnas.run.rundir.exit_when_interrupted`)."""
    from tfnas.train import trainer
    from tfnas.run.rundir import StopOnSignal, exit_when_interrupted

    with exit_when_interrupted():
        report = trainer.train(config, strategy, StopOnSignal())
    run.finish()
    return report


def summary(report: dict[str, Any], model_dir: str) -> str:
    written = "model.keras, model.tflite" if report.get("tflite") else "model.keras"
    return (f"trained {report['epochs']} epochs in {report['seconds']:.0f} s: top-1 "
            f"{report['top1']:.4f}, top-5 {report['top5']:.4f} on {report['val_examples']} "
            f"validation images; wrote {model_dir}/{written} and train_report.json")


def main(argv: list[str]) -> None:
    from tfnas import data
    from tfnas.run import distribute, rundir
    from tfnas.space import load_architecture

    arch = load_architecture(FLAGS.arch)
    data.check_spec(FLAGS.dataset, arch.space.num_classes, arch.space.input_channels)
    config = config_from_flags(FLAGS, arch, FLAGS.dataset, FLAGS.model_dir, FLAGS.seed,
                               FLAGS.jit_compile or bool(FLAGS.tpu))
    # the run directory: one writer, and a rerun must train the same network the same way
    settings = {**cli.flag_settings(FLAGS, skip=("arch", "model_dir", "overwrite", "tpu",
                                                        "strategy")),
                "arch": arch.to_dict(), "inputs": cli.input_fingerprints(
                    {"dataset": FLAGS.dataset}, FLAGS.model_dir)}
    role = distribute.planned_role(FLAGS.strategy, FLAGS.tpu)

    def strategy() -> Any:
        cli.import_tensorflow_quietly()
        return distribute.prepare(distribute.resolve_precision(FLAGS.precision, FLAGS.tpu),
                                  FLAGS.tpu, FLAGS.deterministic, FLAGS.strategy)

    if not role.chief:  # the chief owns the run directory (`tfnas.run.distribute`)
        record = rundir.peek(FLAGS.model_dir, None if FLAGS.overwrite else settings,
                             "training")
        if not (record and record.get("finished")):
            from tfnas.train import trainer
            from tfnas.run.rundir import StopOnSignal, exit_when_interrupted

            with exit_when_interrupted():
                trainer.train(config, strategy(), StopOnSignal())
        print(f"worker {role.index} of {role.workers}: done; the chief wrote "
              f"{FLAGS.model_dir}", flush=True)
        return
    with rundir.claim(FLAGS.model_dir, settings, overwrite=FLAGS.overwrite,
                      what="training") as run:
        report = finished_report(run, FLAGS.model_dir)
        if report is None:
            report = train_in(run, config, strategy())
    print(summary(report, FLAGS.model_dir))


def define_command_flags() -> None:
    """Every flag of `python -m tfnas.train`: the training flags and the run's own."""
    from tfnas.run import distribute

    define = cli.Definer(None, __name__)
    define.DEFINE_string("arch", None, "The architecture to train (arch.json from a search, or "
                        "tools/make_arch.py; a layer space's or a DARTS cell network's).")
    define.DEFINE_string("model_dir", None, "Output and checkpoint directory.")
    define_flags()
    define.DEFINE_string("tpu", None, "TPU name or address: runs under TPUStrategy.")
    define.DEFINE_enum("strategy", "auto", list(distribute.STRATEGIES), distribute.STRATEGY_HELP)
    define.DEFINE_enum("precision", "auto", ["auto", "float32", "mixed_bfloat16"],
                      "Compute dtype (auto: mixed_bfloat16 with --tpu, else float32).")
    define.DEFINE_bool("jit_compile", False, "Compile the train step with XLA (on for TPUs).")
    define.DEFINE_bool("deterministic", True, "Deterministic TensorFlow ops.")
    define.DEFINE_bool("overwrite", False, "Start afresh in a --model_dir that holds a training "
                      "made with other flags or another network (the old run is moved to "
                      "MODEL_DIR.old-TIMESTAMP).")
    flags.mark_flags_as_required(["arch", "model_dir"])
