"""Train a derived Architecture from scratch: the standalone network of `tfnas.nets`.

The recipe of the MnasNet / Single-Path NAS papers, scaled to any dataset: label smoothing
(0.1), dropout before the classifier, a cosine learning rate with linear warm-up, weight decay;
batch-norm statistics are re-estimated on training images before the evaluation. Networks of
DARTS cells add DARTS' own (Liu et al. 2019, Sec. 3.3): the auxiliary head's loss with weight
0.4 (when the architecture has the head) and drop-path rising linearly to `drop_path`
(`tfnas.nets.drop_path`; the saved network has no drop-path layers). Keras `fit`
runs it, so TPUStrategy, MirroredStrategy, bfloat16 and XLA (`jit_compile`) work as in the
search. Resumable at epoch granularity: the model and optimizer are checkpointed after every
epoch, a SIGTERM stops at the next step, and running again continues after the last finished
epoch, with the same data order (epoch e always sees `Data.train(e)`).

Outputs in `model_dir`: model.keras (the trained network) and its arch.json,
train_report.json (top1, top5, epochs, seconds, params, flops, arch), train_log.csv (per
epoch), checkpoints (ckpt-*), TensorBoard events (tb/).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable

from tfnas.errors import TfnasError
from tfnas.run.files import write_bytes, write_text
from tfnas.run.rundir import Interrupted, Stopwatch
from tfnas.space import Architecture
from tfnas.space.cells import is_cell_network

OPTIMIZERS = ("sgd", "adamw")
LOG_FIELDS = ("epoch", "loss", "top1", "top5")  # train_log.csv


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run, as plain values (flags live in `tfnas/train/command.py`)."""

    arch: Architecture
    dataset: str
    model_dir: str
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"
    learning_rate: float = 0.004  # peak, after the warm-up
    warmup_epochs: float = 1.0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    dropout: float = 0.2
    auxiliary_weight: float = 0.4  # cells with the auxiliary head: its loss's weight (DARTS)
    drop_path: float = 0.0  # cells: the last epoch's drop-path probability (DARTS CIFAR: 0.2)
    seed: int = 0
    jit_compile: bool = False
    tflite: bool = False  # also write model.tflite (float32), as tools/export_tflite.py does
    verbose: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("batch_size must be at least 1")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if not 0 <= self.warmup_epochs < self.epochs:
            problems.append("warmup_epochs must be in [0, epochs)")
        if self.weight_decay < 0:
            problems.append("weight_decay must be 0 or more")
        if not 0 <= self.label_smoothing < 1:
            problems.append("label_smoothing must be in [0, 1)")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must be in [0, 1)")
        if self.auxiliary_weight < 0:
            problems.append("auxiliary_weight must be 0 or more")
        if not 0 <= self.drop_path < 1:
            problems.append("drop_path must be in [0, 1)")
        elif self.drop_path and not is_cell_network(self.arch.space):
            problems.append(f"drop_path applies to networks of DARTS cells, not the "
                            f"{self.arch.space.name} layer space")
        if problems:
            raise TfnasError("; ".join(problems))


def train(config: TrainConfig, strategy: Any = None,
          should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Trains (or resumes) the network and writes model.keras and train_report.json. Across
    workers only the chief writes model_dir; the others restore from it and write to a
    scratch directory they remove (`tfnas.run.distribute`)."""
    import tensorflow as tf

    from tfnas.run import distribute

    strategy = strategy or tf.distribute.get_strategy()
    role = distribute.role_of(strategy)
    with distribute.output_dir(role, config.model_dir) as model_dir:
        return _train(config, strategy, should_stop, model_dir, across=role.workers > 1)


def _train(config: TrainConfig, strategy: Any, should_stop: Callable[[], bool],
           model_dir: Path, across: bool) -> dict[str, Any]:
    """`train` writing to `model_dir`; `across`: over several workers (Keras' fit cannot run
    there: `tfnas.train.across_workers`)."""
    import keras
    import tensorflow as tf

    from tfnas import data
    from tfnas.optimizers import StepAdam, StepSGD, as_keras
    from tfnas.run import checkpoints, csvlog
    from tfnas import nets
    from tfnas.nets import drop_path

    arch, space = config.arch, config.arch.space
    if config.batch_size % strategy.num_replicas_in_sync:
        raise TfnasError(f"batch size {config.batch_size} does not split over "
                         f"{strategy.num_replicas_in_sync} replicas")
    dataset = data.load_for_space(config.dataset, space, batch_size=config.batch_size,
                                  seed=config.seed)
    if dataset.spec.num_classes != space.num_classes:
        raise TfnasError(f"{config.dataset} has {dataset.spec.num_classes} classes but the "
                         f"architecture's space has {space.num_classes}")
    model_dir.mkdir(parents=True, exist_ok=True)
    steps = dataset.steps_per_epoch
    keras.utils.set_random_seed(config.seed)
    auxiliary = bool(getattr(space, "auxiliary", False))  # (logits, auxiliary logits)
    with strategy.scope():
        model = nets.build(arch, dropout=config.dropout, drop_path=config.drop_path > 0)
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if config.warmup_epochs else config.learning_rate,
            warmup_target=config.learning_rate if config.warmup_epochs else None,
            warmup_steps=int(config.warmup_epochs * steps),
            decay_steps=max(1, int((config.epochs - config.warmup_epochs) * steps)))
        if config.optimizer == "sgd":
            optimizer = StepSGD(schedule, momentum=0.9, nesterov=True,
                                weight_decay=config.weight_decay)
        else:  # AdamW (`tfnas.optimizers`: Keras' values, a fraction of its graph)
            optimizer = StepAdam(schedule, weight_decay=config.weight_decay)
        compile_args = _compile_args(keras, config, space.num_classes)
        if auxiliary:  # DARTS: loss + 0.4 · the auxiliary head's loss; metrics of the logits
            loss = compile_args["loss"]
            compile_args.update(loss=[loss, loss], loss_weights=[1.0, config.auxiliary_weight],
                                metrics=[compile_args["metrics"], []])
        model.compile(optimizer=optimizer, **compile_args)
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="epoch")
    rng = checkpoints.rng_states(model)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch, rng=rng)
    chief_dir = Path(config.model_dir)
    manager, _ = checkpoints.open_manager(checkpoint, model_dir,
                                          source=None if model_dir == chief_dir else chief_dir)
    start_epoch = int(epoch.numpy())
    saver = checkpoints.EpochCheckpoints(manager, start_epoch, share=None if across else 0.05)
    log_path = model_dir / "train_log.csv"
    csvlog.cut_epochs(log_path, LOG_FIELDS, start_epoch)  # later epochs' rows: again
    clock = Stopwatch(model_dir / "train_seconds.txt")

    def one_hot(images: Any, labels: Any) -> tuple[Any, Any]:
        return images, tf.one_hot(labels, space.num_classes)

    def one_hot_targets(images: Any, labels: Any) -> tuple[Any, Any]:
        images, targets = one_hot(images, labels)
        return images, ((targets, targets) if auxiliary else targets)

    def logged(logs: Any, key: str) -> float:  # Keras names a two-output model's metrics
        name = key if key == "loss" or not auxiliary else f"logits_{key}"  # by its output
        return float((logs or {}).get(name, float("nan")))

    if config.verbose:
        print(f"{'resuming' if start_epoch else 'starting'} training: {space.name} network "
              f"({arch.params():,} params, {arch.flops() / 1e6:.3g} MFLOPs) on "
              f"{config.dataset} ({dataset.spec.train_examples} train images), "
              f"{config.epochs} epochs x {steps} steps"
              + (f", from epoch {start_epoch}" if start_epoch else ""), flush=True)
    if start_epoch < config.epochs:
        def epoch_begins(index: int) -> None:
            if config.drop_path:  # DARTS: p · epoch / epochs, from 0
                drop_path.set_rate(model, config.drop_path * index / config.epochs)

        def epoch_ends(index: int, values: dict[str, float]) -> None:
            # the row first, then the checkpoint that says how far the log holds
            csvlog.append_rows(log_path, LOG_FIELDS, [{"epoch": index, **values}])
            epoch.assign(index + 1)
            if saver.due(last=index + 1 == config.epochs):
                saver.save(epochs=index + 1)
            clock.save()

        if across:
            from tfnas.train import across_workers

            across_workers.fit(
                model, optimizer, strategy, batches=dataset.train, steps=steps,
                start_epoch=start_epoch, epochs=config.epochs, global_batch=config.batch_size,
                num_classes=space.num_classes, label_smoothing=config.label_smoothing,
                auxiliary_weight=config.auxiliary_weight if auxiliary else None,
                on_epoch_begin=epoch_begins, on_epoch_end=epoch_ends, should_stop=should_stop)
        else:
            _fit(model, functools.reduce(
                lambda a, b: a.concatenate(b),
                [dataset.train(e) for e in range(start_epoch, config.epochs)]
            ).map(one_hot_targets), config, start_epoch, steps, model_dir, epoch_begins,
                lambda index, logs: epoch_ends(index, {k: logged(logs, k)
                                                       for k in LOG_FIELDS[1:]}),
                should_stop)
        if int(epoch.numpy()) < config.epochs:
            held = (f"the checkpoint in {chief_dir} holds {saver.saved_epochs} epoch(s): run "
                    "the same command to resume" if saver.saved_epochs else
                    "no epoch was finished: the same command starts again")
            raise Interrupted(f"stopped during epoch {int(epoch.numpy())}; {held}")
    # the network of arch.json: without drop-path layers (the weights are the same), and
    # evaluated on its logits alone
    network, evaluated = model, model
    if config.drop_path or auxiliary:
        with strategy.scope():
            if config.drop_path:
                network = nets.build(arch, dropout=config.dropout)
                for layer in network.layers:
                    if layer.weights:
                        layer.set_weights(model.get_layer(layer.name).get_weights())
            evaluated = (keras.Model(network.inputs, network.outputs[0]) if auxiliary
                         else network)
            evaluated.compile(**_compile_args(keras, config, space.num_classes))
    # precise BN (as the search's validation): moving averages with momentum 0.99 lag far
    # behind in short runs (digits, 5 epochs: 0.99 train accuracy, 0.15 on validation), so the
    # statistics are set from training images before the network is evaluated and saved
    images = next(iter(dataset.train(0).unbatch().batch(min(1024, steps * config.batch_size))))
    nets.recalibrate_batchnorm(network, images[0])
    if across:
        from tfnas.train import across_workers

        results = across_workers.evaluate(evaluated, dataset.val(drop_remainder=False),
                                          num_classes=space.num_classes,
                                          label_smoothing=config.label_smoothing)
    else:
        results = evaluated.evaluate(dataset.val(drop_remainder=False).map(one_hot),
                                     verbose=0, return_dict=True)
    seconds = clock.seconds()
    if network is model:  # Keras' own optimizer in model.keras: it loads without tfnas
        with strategy.scope():
            model.compile(optimizer=as_keras(optimizer), **compile_args)
    network.save(model_dir / "model.keras")
    arch.save(model_dir / "arch.json")  # beside the model: export_tflite finds it there
    if config.tflite:  # the network of arch.json, in this process (no second start-up)
        from tfnas.deploy import export

        write_bytes(model_dir / "model.tflite", export.to_tflite(evaluated, arch=arch))
    report = {"top1": float(results["top1"]), "top5": float(results["top5"]),
              "loss": float(results["loss"]), "epochs": config.epochs,
              "seconds": round(seconds, 2), "dataset": config.dataset,
              "val_examples": dataset.spec.val_examples, "params": arch.params(),
              "flops": arch.flops(), "optimizer": config.optimizer,
              "learning_rate": config.learning_rate, "batch_size": config.batch_size,
              **({"auxiliary_weight": config.auxiliary_weight} if auxiliary else {}),
              **({"drop_path": config.drop_path} if config.drop_path else {}),
              **({"tflite": "model.tflite"} if config.tflite else {}),
              "arch": arch.to_dict()}
    write_text(model_dir / "train_report.json", json.dumps(report, indent=1) + "\n")
    return report


def _fit(model: Any, train_data: Any, config: TrainConfig, start_epoch: int, steps: int,
         model_dir: Path, epoch_begins: Callable[[int], None],
         epoch_ends: Callable[[int, Any], None], should_stop: Callable[[], bool]) -> None:
    """The epochs through Keras' `model.fit` (one worker), with TensorBoard events; a stop
    request ends the epoch under way unfinished (not logged, not saved)."""
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        stopped = False

        def on_epoch_end(self, index: int, logs: Any = None) -> None:
            if not self.stopped:  # Keras ends a stopped epoch early: it is not finished
                epoch_ends(index, logs)

        def on_epoch_begin(self, index: int, logs: Any = None) -> None:
            epoch_begins(index)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if should_stop():
                self.stopped = self.model.stop_training = True

    board = keras.callbacks.TensorBoard(str(model_dir / "tb"), write_graph=False)
    model.fit(train_data, epochs=config.epochs, initial_epoch=start_epoch,
              steps_per_epoch=steps, verbose=2 if config.verbose else 0,
              shuffle=False,  # the pipeline shuffles per epoch (Keras warns otherwise)
              callbacks=[EpochCheckpoint(), board])


def _compile_args(keras: Any, config: TrainConfig, num_classes: int) -> dict[str, Any]:
    """The loss (label-smoothed cross-entropy on logits), top-1 / top-5 metrics and XLA
    setting of one output."""
    return dict(loss=keras.losses.CategoricalCrossentropy(
                    from_logits=True, label_smoothing=config.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="top1"),
                         keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes),
                                                               name="top5")],
                jit_compile=config.jit_compile)
