"""The search loop and `python -m tfnas.search`.

Single-Path NAS (Stamoulis et al., Eq. 8): one loss CE + λ·penalty(R) trains the supernet's
weights and its thresholds together (single-level), in one TPU-ready step: static shapes,
`drop_remainder` batches, no Python branching on tensors, λ and kernel-dropout held in
variables, optional XLA (`jit_compile`), global-batch-correct loss under any tf.distribute
strategy (DESIGN.md rule 5). A search is resumable: weights, thresholds, optimizer state,
epoch and step are checkpointed, and a SIGTERM saves before exiting (rule 6).

Outputs in `model_dir`: arch.json, report.json, search_log.csv (one row per epoch),
checkpoints (ckpt-*), TensorBoard events (tb/).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import signal
import time
from pathlib import Path
from typing import Any, Callable

from tfnas.costs import CostModel
from tfnas.errors import TfnasError
from tfnas.objectives import Objective
from tfnas.space import Architecture, SearchSpace

LOG_FIELDS = ("epoch", "ce", "accuracy", "val_accuracy", "cost", "lam", "seconds", "arch")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs, as plain values (flags live only in `main`)."""

    space: SearchSpace
    dataset: str
    cost_model: CostModel
    objective: Objective
    model_dir: str
    method: str = "superkernel"
    epochs: int = 8
    warmup_epochs: int = 0
    batch_size: int = 64
    learning_rate: float = 0.01
    seed: int = 0
    kernel_dropout: float = 0.0
    dropout_epochs: int = 0
    dropout: float = 0.2
    jit_compile: bool = False
    sync_bn: bool = True
    checkpoint_every: int = 50
    target_ms: float | None = None
    arch_learning_rate: float = 0.01  # Adam on α (multi-path methods)
    arch_split: float = 0.2  # training examples held out for α (multi-path methods)
    temperature: tuple[float, float] = (5.0, 0.5)  # Gumbel τ, first and last epoch
    path_select: str = "auto"  # mixed ops: switch | mask | auto (mask under XLA off TPUs)
    verbose: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if not 0 <= self.warmup_epochs < self.epochs:
            problems.append("warmup_epochs must be in [0, epochs)")
        if self.learning_rate <= 0:
            problems.append("learning_rate must be positive")
        if not 0 <= self.kernel_dropout < 1:
            problems.append("kernel_dropout must be in [0, 1)")
        if self.checkpoint_every < 1:
            problems.append("checkpoint_every must be at least 1")
        if self.arch_learning_rate <= 0:
            problems.append("arch_learning_rate must be positive")
        if not 0 < self.arch_split < 1:
            problems.append("arch_split must be in (0, 1)")
        if not min(self.temperature) > 0:
            problems.append("temperatures must be positive")
        if self.path_select not in ("auto", "switch", "mask"):
            problems.append(f"path_select must be auto, switch or mask, got {self.path_select!r}")
        if self.target_ms is not None and not self.target_ms > 0:
            problems.append(f"target_ms must be positive, got {self.target_ms}")
        if problems:
            raise TfnasError("; ".join(problems))


class Interrupted(Exception):
    """The search saved a checkpoint and stopped on request (SIGTERM / SIGINT)."""


class Search:
    """Builds the supernet, data, optimizer and checkpoint of a search; `run()` executes it."""

    def __init__(self, config: SearchConfig, strategy: Any = None) -> None:
        import keras
        import tensorflow as tf

        from tfnas import data, supernet

        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise TfnasError(f"batch size {config.batch_size} does not split over {replicas} "
                             "replicas")
        space = config.space
        self.data = data.load(config.dataset, image_size=space.input_size,
                              channels=space.input_channels, num_classes=space.num_classes,
                              batch_size=config.batch_size, seed=config.seed)
        if self.data.spec.num_classes != space.num_classes:
            raise TfnasError(f"{config.dataset} has {self.data.spec.num_classes} classes but "
                             f"space {space.name!r} has {space.num_classes}: pick a matching "
                             "space or set --num_classes")
        self.multi_path = supernet.is_multi_path(config.method)
        # bi-level (multi-path): weights on one part of the training set, α on the rest
        self.weight_data, self.arch_data = (self.data.hold_out(config.arch_split)
                                            if self.multi_path else (self.data, None))
        keras.utils.set_random_seed(config.seed)
        # XLA's CPU (and GPU) backends compile convolutions inside conditionals as plain loops:
        # minutes per layer. TPUs keep the one-path switch; elsewhere XLA gets the mask.
        self.path_select = config.path_select
        if self.path_select == "auto":
            on_tpu = isinstance(self.strategy, tf.distribute.TPUStrategy)
            self.path_select = "mask" if config.jit_compile and not on_tpu else "switch"
        with self.strategy.scope():
            self.model = supernet.build(space, method=config.method, seed=config.seed,
                                        drop_rate=config.kernel_dropout,
                                        dropout=config.dropout,
                                        sync_bn=config.sync_bn and replicas > 1,
                                        temperature=config.temperature[0],
                                        select=self.path_select)
            self.architecture_variables = supernet.architecture_variables(self.model)
            arch_ids = {id(v) for v in self.architecture_variables}
            # one-level (superkernel): one optimizer trains weights and thresholds together
            self.weight_variables = [v for v in self.model.trainable_variables
                                     if not self.multi_path or id(v) not in arch_ids]
            self.optimizer = keras.optimizers.Adam(config.learning_rate)
            self.optimizer.build(self.weight_variables)
            self.arch_optimizer = None
            if self.multi_path:  # ProxylessNAS: β1 = 0, so α of unsampled paths stay put
                self.arch_optimizer = keras.optimizers.Adam(
                    config.arch_learning_rate,
                    beta_1=0.0 if config.method == "proxyless" else 0.5)
                self.arch_optimizer.build(self.architecture_variables)
            self.lam = tf.Variable(0.0, trainable=False, name="lam")
            self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="epoch")
            self.step = tf.Variable(0, trainable=False, dtype=tf.int64, name="step")
        # Keras keeps RNG states (kernel-subset and classifier dropout) out of the model's
        # checkpoint: add them, or a resumed search would draw other masks than a straight one
        rng = [v.value for v in self.model.non_trainable_variables
               if v.name == "seed_generator_state"]
        extra = {"arch_optimizer": self.arch_optimizer} if self.multi_path else {}
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              lam=self.lam, epoch=self.epoch, step=self.step,
                                              rng=rng, **extra)
        self.manager = tf.train.CheckpointManager(self.checkpoint, config.model_dir,
                                                  max_to_keep=2)
        self._steps: dict[bool, Callable[..., dict[str, Any]]] = {}

    # --- the step ---------------------------------------------------------------------------

    def loss_terms(self, images: Any, labels: Any) -> dict[str, Any]:
        """Forward pass and cost under the caller's tape: loss, ce, cost, accuracy (per replica,
        CE averaged over the global batch)."""
        import tensorflow as tf

        from tfnas import supernet

        logits = tf.cast(self.model(images, training=True), tf.float32)
        per_example = tf.keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                      from_logits=True)
        ce = tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)
        cost = tf.cast(supernet.expected_cost(self.model, self.config.cost_model), tf.float32)
        replicas = self.strategy.num_replicas_in_sync
        # the cost term is the same on every replica; gradients are summed across replicas
        penalty = self.lam * self.config.objective.penalty(cost) / replicas
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                                   tf.cast(labels, tf.int32)), tf.float32)
        accuracy = tf.reduce_sum(correct) / self.config.batch_size
        return {"loss": ce + penalty, "ce": ce, "cost": cost / replicas, "accuracy": accuracy}

    def _step_function(self, train_arch: bool) -> Callable[..., dict[str, Any]]:
        """The compiled distributed step. One-level (superkernel): one gradient step on
        CE + λ·penalty for weights and thresholds. Bi-level (multi-path): a weight step on CE
        with a training batch, then (`train_arch`, i.e. after the warm-up) an α step on
        CE + λ·penalty with a held-out batch; the step takes both batches."""
        train_arch = train_arch and self.multi_path  # (one level: the same step throughout)
        if train_arch in self._steps:
            return self._steps[train_arch]
        import tensorflow as tf

        from tfnas import supernet
        from tfnas.layers.mixed import arch_phase

        def one_level(images: Any, labels: Any) -> dict[str, Any]:
            with tf.GradientTape() as tape:
                terms = self.loss_terms(images, labels)
            grads = tape.gradient(terms["loss"], self.weight_variables)
            self.optimizer.apply(grads, self.weight_variables)
            return terms

        def bi_level(images: Any, labels: Any, arch_images: Any,
                     arch_labels: Any) -> dict[str, Any]:
            with tf.GradientTape() as tape:
                terms = self.loss_terms(images, labels)
            grads = tape.gradient(terms["ce"], self.weight_variables)
            self.optimizer.apply(grads, self.weight_variables)
            if train_arch:
                with arch_phase(supernet.searchable_layers(self.model)):
                    with tf.GradientTape() as tape:
                        arch_terms = self.loss_terms(arch_images, arch_labels)
                grads = tape.gradient(arch_terms["loss"], self.architecture_variables)
                self.arch_optimizer.apply(grads, self.architecture_variables)
                terms["cost"] = arch_terms["cost"]
            return terms

        step = tf.function(bi_level if self.multi_path else one_level,
                           jit_compile=self.config.jit_compile)

        @tf.function
        def distributed_step(*batch: Any) -> dict[str, Any]:
            per_replica = self.strategy.run(step, args=batch)
            return {key: self.strategy.reduce("SUM", value, axis=None)
                    for key, value in per_replica.items()}

        self._steps[train_arch] = distributed_step
        return distributed_step

    def train_step(self, images: Any, labels: Any, arch_images: Any = None,
                   arch_labels: Any = None) -> dict[str, float]:
        """One step on a global batch (distributed over the strategy's replicas); multi-path
        methods also take an α step on (arch_images, arch_labels), default the same batch."""
        import tensorflow as tf

        batch = (images, labels)
        if self.multi_path:
            batch += (images if arch_images is None else arch_images,
                      labels if arch_labels is None else arch_labels)
        dist = self.strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(batch))
        return {k: float(v) for k, v in self._step_function(True)(*next(iter(dist))).items()}

    def _epoch_batches(self, epoch: int) -> Any:
        """The epoch's batches: (images, labels), or with the held-out α batches appended."""
        train = self.weight_data.train(epoch)
        if not self.multi_path:
            return train
        import tensorflow as tf

        arch = self.arch_data.train(epoch).repeat()
        return tf.data.Dataset.zip((train, arch)).map(lambda w, a: (*w, *a))

    # --- the loop ---------------------------------------------------------------------------

    def restore(self) -> bool:
        """Continues from the latest checkpoint in model_dir, if any."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return bool(latest)

    def validate(self) -> float:
        """Top-1 of the supernet's current decisions on the validation split.

        Training uses batch statistics only, so the moving BN statistics are first set from
        training images (one pass, `nets.recalibrate_batchnorm`): early in a short search the
        moving averages have not caught up and would understate the accuracy."""
        import tensorflow as tf

        from tfnas import nets

        images = next(iter(self.data.train(0).unbatch().batch(256)))[0]
        nets.recalibrate_batchnorm(self.model, images)
        correct = total = 0
        for images, labels in self.data.val():
            logits = self.model(images, training=False)
            correct += int(tf.reduce_sum(tf.cast(
                tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.int32)))
            total += int(labels.shape[0])
        return correct / max(total, 1)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Runs (or resumes) the search; returns the report. Raises Interrupted on stop."""
        import keras
        import tensorflow as tf

        from tfnas import supernet

        config = self.config
        model_dir = Path(config.model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.restore()
        writer = tf.summary.create_file_writer(str(model_dir / "tb"))
        log_path = model_dir / "search_log.csv"
        start = time.time()
        elapsed_before = _previous_seconds(model_dir)
        steps = self.weight_data.steps_per_epoch
        if config.verbose:
            print(f"{'resuming' if resumed else 'starting'} search: {config.method} on "
                  f"{config.dataset} ({self.data.spec.train_examples} train images), space "
                  f"{config.space.name}, {config.epochs} epochs x {steps} steps, "
                  f"{self.strategy.num_replicas_in_sync} replica(s)", flush=True)
        while int(self.epoch) < config.epochs:
            epoch = int(self.epoch)
            self.lam.assign(0.0 if epoch < config.warmup_epochs else config.objective.lam)
            supernet.set_drop_rate(self.model, config.kernel_dropout
                                   if epoch < config.dropout_epochs else 0.0)
            tau = _annealed(config.temperature, epoch, config.epochs)
            supernet.set_temperature(self.model, tau)
            step_fn = self._step_function(epoch >= config.warmup_epochs)
            first = int(self.step)
            bar = keras.utils.Progbar(steps, verbose=1 if config.verbose else 0,
                                      stateful_metrics=["cost", "lam"])
            sums = {"ce": 0.0, "accuracy": 0.0}
            epoch_start = time.time()
            dist = self.strategy.experimental_distribute_dataset(
                self._epoch_batches(epoch).skip(first))
            for i, batch in enumerate(dist, start=first):
                terms = {k: float(v) for k, v in step_fn(*batch).items()}
                self.step.assign(i + 1)
                for key in sums:
                    sums[key] += terms[key]
                bar.update(i + 1, [("ce", terms["ce"]), ("acc", terms["accuracy"]),
                                   ("cost", terms["cost"]), ("lam", float(self.lam))])
                if should_stop():
                    self.manager.save()
                    _save_seconds(model_dir, elapsed_before + time.time() - start)
                    raise Interrupted(f"stopped at epoch {epoch} step {i + 1}; checkpoint saved"
                                      f" in {model_dir}: run the same command to resume")
                if (i + 1) % config.checkpoint_every == 0:
                    self.manager.save()
            arch = supernet.derive(self.model, config.space)
            row = {"epoch": epoch, "ce": sums["ce"] / max(steps - first, 1),
                   "accuracy": sums["accuracy"] / max(steps - first, 1),
                   "val_accuracy": self.validate(),
                   "cost": float(supernet.expected_cost(self.model, config.cost_model)),
                   "lam": float(self.lam), "seconds": time.time() - epoch_start,
                   "arch": " ".join(op.name for op in arch.ops)}
            _append_log(log_path, row)
            with writer.as_default(step=epoch):
                for key in ("ce", "accuracy", "val_accuracy", "cost", "lam"):
                    tf.summary.scalar(key, row[key])
            self.epoch.assign(epoch + 1)
            self.step.assign(0)
            self.manager.save()
            _save_seconds(model_dir, elapsed_before + time.time() - start)
            if config.verbose:
                print(f"epoch {epoch}: val accuracy {row['val_accuracy']:.3f}, "
                      f"{config.cost_model.name} {row['cost']:.4g} {config.cost_model.unit}",
                      flush=True)
        return self._finish(elapsed_before + time.time() - start)

    def _finish(self, seconds: float) -> dict[str, Any]:
        from tfnas import supernet

        config = self.config
        arch = supernet.derive(self.model, config.space)
        model_dir = Path(config.model_dir)
        arch.save(model_dir / "arch.json")
        report = {
            "method": config.method, "space": config.space.name, "dataset": config.dataset,
            "cost": config.objective.kind, "lam": config.objective.lam,
            "cost_metric": config.cost_model.name, "cost_unit": config.cost_model.unit,
            "target_ms": config.target_ms,
            "predicted_ms": (config.cost_model.of(arch)
                             if config.cost_model.name == "latency" else None),
            "predicted_cost": config.cost_model.of(arch),
            "params": arch.params(), "flops": arch.flops(),
            "search_seconds": round(seconds, 2), "epochs": config.epochs,
            "arch": arch.to_dict()}
        (model_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        return report


def _annealed(temperature: tuple[float, float], epoch: int, epochs: int) -> float:
    """Gumbel τ of an epoch: exponential from the first value to the last (FBNet Sec. 3.3)."""
    start, end = temperature
    return start * (end / start) ** (epoch / max(epochs - 1, 1))


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _previous_seconds(model_dir: Path) -> float:
    path = model_dir / "search_seconds.txt"
    return float(path.read_text()) if path.exists() else 0.0


def _save_seconds(model_dir: Path, seconds: float) -> None:
    (model_dir / "search_seconds.txt").write_text(f"{seconds:.3f}\n")


class StopOnSignal:
    """SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step and stops."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


# --- command line --------------------------------------------------------------------------

def _define_flags() -> None:
    from absl import flags

    from tfnas import data, objectives, space
    from tfnas.methods import METHODS

    flags.DEFINE_string("space", "tiny", f"Search space preset: {', '.join(space.PRESET_NAMES)}.")
    flags.DEFINE_integer("num_classes", None, "Override the space's number of classes.")
    flags.DEFINE_integer("input_size", None, "Override the space's input size.")
    flags.DEFINE_float("width_multiplier", None, "Override the space's width multiplier.")
    flags.DEFINE_string("dataset", "digits", f"Dataset: {', '.join(data.KINDS)}.")
    flags.DEFINE_enum("method", "superkernel", list(METHODS), "Search method: "
                      "superkernel (Single-Path NAS), softmax (DARTS/FBNet mixed op), gumbel "
                      "(hard Gumbel-softmax, one path per step: LightNAS), gumbel_soft (FBNet), "
                      "proxyless (ProxylessNAS binary gates).")
    flags.DEFINE_float("arch_learning_rate", 0.01, "Adam learning rate of α (multi-path).")
    flags.DEFINE_float("arch_split", 0.2, "Training examples held out to learn α (multi-path).")
    flags.DEFINE_float("tau_start", 5.0, "Gumbel temperature of the first epoch.")
    flags.DEFINE_float("tau_end", 0.5, "Gumbel temperature of the last epoch.")
    flags.DEFINE_enum("path_select", "auto", ["auto", "switch", "mask"], "How gumbel and "
                      "proxyless run the chosen path: switch (that path alone), mask (every "
                      "path, one kept: compiles fast under XLA on CPUs/GPUs), auto (mask with "
                      "--jit_compile off TPUs, else switch).")
    flags.DEFINE_string("latency_table", None,
                        "Latency table JSON, or a built-in table (pixel1).")
    flags.DEFINE_string("latency_model", "table", "What predicts latency: table (the "
                        "--latency_table or --device table) or predictor:PATH (an MLP from "
                        "tools/train_predictor.py).")
    flags.DEFINE_enum("cost_metric", None, ["latency", "params", "flops"],
                      "What R counts: latency (ms, from --latency_table), params (M) or FLOPs "
                      "(M multiply-adds). Default: latency with a table, else flops.")
    flags.DEFINE_enum("cost", "log", list(objectives.KINDS),
                      "Cost term: log (CE + λ log R, the paper's Eq. 9) or linear (CE + λ R).")
    flags.DEFINE_float("lam", 0.02, "λ, the weight of the cost term (the paper: 0.020).")
    flags.DEFINE_integer("epochs", 8, "Search epochs.")
    flags.DEFINE_integer("warmup_epochs", 0, "First epochs with λ = 0.")
    flags.DEFINE_integer("batch_size", 64, "Global batch size.")
    flags.DEFINE_float("learning_rate", 0.01, "Adam learning rate (weights and thresholds).")
    flags.DEFINE_float("kernel_dropout", 0.0, "Drop rate of kernel subsets (paper Sec. 4.2).")
    flags.DEFINE_integer("dropout_epochs", 0, "Epochs with kernel-subset dropout.")
    flags.DEFINE_float("dropout", 0.2, "Dropout before the classifier.")
    flags.DEFINE_integer("seed", 0, "Seed of weights, data order and dropout.")
    flags.DEFINE_string("model_dir", None, "Output and checkpoint directory.")
    flags.DEFINE_string("tpu", None, "TPU name or address: runs under TPUStrategy.")
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16"], "Compute dtype.")
    flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA (on for TPUs).")
    flags.DEFINE_integer("checkpoint_every", 50, "Steps between checkpoints.")
    flags.DEFINE_string("device", None, "Profile this device (local, adb:SERIAL or "
                        "cmd:TEMPLATE) into "
                        "--latency_table (default MODEL_DIR/lut.json; only missing rows are "
                        "measured), search on it, and measure the derived network there.")
    flags.DEFINE_integer("threads", 1, "Threads on --device.", lower_bound=1)
    flags.DEFINE_integer("profile_runs", 40, "Timed runs per table row and network, at least.",
                         lower_bound=1)
    flags.DEFINE_float("profile_seconds", 1.0, "Each group of models on --device is timed for "
                       "at least this long.", lower_bound=0)
    flags.DEFINE_integer("profile_repeats", 3, "Times each group of models on --device is "
                         "timed; each model keeps its median.", lower_bound=1)
    flags.DEFINE_integer("calibration_archs", 4, "Whole networks measured to calibrate the "
                         "device's table.", lower_bound=0)
    flags.DEFINE_float("target_ms", None, "Latency target in ms, reported next to the "
                       "derived network's predicted latency.")
    flags.DEFINE_bool("deterministic", True, "Deterministic TensorFlow ops (resumed searches "
                      "end exactly where uninterrupted ones do).")
    flags.mark_flag_as_required("model_dir")


def device_table_path(flags_values: Any) -> str:
    """Where `--device` profiling writes (or completes) its table."""
    f = flags_values
    return f.latency_table or str(Path(f.model_dir) / "lut.json")


def config_from_flags(flags_values: Any, table_ready: bool = True) -> SearchConfig:
    """Validates the flags and builds the SearchConfig; every problem is one TfnasError.

    With `--device`, call it once with `table_ready=False` to validate before profiling, and
    again once the device's table exists."""
    from tfnas.latency.table import LatencyTable
    from tfnas.space import get_space

    f = flags_values
    if f.device:
        from tfnas.latency.devices import parse_device

        parse_device(f.device, threads=f.threads)  # a bad spec stops here
    space = get_space(f.space, num_classes=f.num_classes, input_size=f.input_size,
                      width_multiplier=f.width_multiplier)
    objective = Objective(f.cost, f.lam)
    kind, _, predictor_path = f.latency_model.partition(":")
    if f.latency_model != "table" and not (kind == "predictor" and predictor_path):
        raise TfnasError(f"--latency_model={f.latency_model!r}: expected table or "
                         "predictor:PATH")
    metric = f.cost_metric or ("latency" if f.latency_table or f.device or predictor_path
                               else "flops")
    if metric == "latency" and predictor_path:
        from tfnas.latency.predictor import LatencyPredictor

        cost_model = LatencyPredictor.load(predictor_path)
        if cost_model.space != space:
            raise TfnasError(f"predictor {predictor_path!r} was trained for space "
                             f"{cost_model.space.name!r} ({cost_model.space.num_layers} layers), "
                             f"not this {space.name!r}")
    elif metric == "params":
        cost_model = CostModel.params(space)
    elif metric == "flops" or (f.device and not table_ready):
        cost_model = CostModel.flops(space)  # the device's table is built after validation
    elif f.latency_table or f.device:
        path = device_table_path(f)
        cost_model = CostModel.latency(space, LatencyTable.load(path),
                                       f"latency table {path!r}")
    else:
        raise TfnasError("--cost_metric=latency needs --latency_table (a JSON table or pixel1)")
    from tfnas import data

    data.check_spec(f.dataset)
    return SearchConfig(
        space=space, dataset=f.dataset, cost_model=cost_model, objective=objective,
        model_dir=f.model_dir, method=f.method, epochs=f.epochs, warmup_epochs=f.warmup_epochs,
        batch_size=f.batch_size, learning_rate=f.learning_rate, seed=f.seed,
        kernel_dropout=f.kernel_dropout, dropout_epochs=f.dropout_epochs, dropout=f.dropout,
        jit_compile=f.jit_compile or bool(f.tpu), checkpoint_every=f.checkpoint_every,
        target_ms=f.target_ms, arch_learning_rate=f.arch_learning_rate,
        arch_split=f.arch_split, temperature=(f.tau_start, f.tau_end),
        path_select=f.path_select)


def main(argv: list[str]) -> None:
    from absl import flags

    from tfnas import cli, distribute

    f = flags.FLAGS
    config = config_from_flags(f, table_ready=not f.device)  # bad flags stop here
    cli.import_tensorflow_quietly()
    device = None
    if f.device:  # build (or complete) the device's table, then search on it
        from tfnas.latency.devices import parse_device
        from tfnas.latency.meter import Meter, default_reference
        from tfnas.latency.profiler import calibrate, profile

        device = parse_device(f.device, threads=f.threads)
        device.check()
        meter = Meter(device, runs=f.profile_runs, min_seconds=f.profile_seconds,
                      repeats=f.profile_repeats,
                      reference=default_reference(config.space))
        path = device_table_path(f)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        table = profile(config.space, meter, path)
        calibrate(table, config.space, meter, path, num_archs=f.calibration_archs)
        meter.anchor_to(table)  # the derived net is measured in the table's units
        config = config_from_flags(f)
    if f.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    distribute.set_precision(flags.FLAGS.precision)
    strategy = distribute.strategy_for(flags.FLAGS.tpu)
    search = Search(config, strategy)
    try:
        report = search.run(StopOnSignal())
    except Interrupted as stop:
        print(stop, flush=True)
        raise SystemExit(143)
    arch = Architecture.from_dict(report["arch"])
    if device is not None:  # the derived network, measured on the device it was searched for
        from tfnas.latency.profiler import measure_network

        report["measured_ms"] = measure_network(arch, meter)
        (Path(config.model_dir) / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        print(f"measured on {device.name}: {report['measured_ms']:.4g} ms")
    print(arch.table())
    unit = config.cost_model.unit
    target = f" (target {config.target_ms:g} ms)" if config.target_ms else ""
    print(f"predicted {config.cost_model.name}: {report['predicted_cost']:.4g} {unit}{target}; "
          f"search took {report['search_seconds']:.0f} s; wrote {config.model_dir}/arch.json "
          "and report.json")


if __name__ == "__main__":
    from tfnas import cli

    _define_flags()
    cli.run(main, tensorflow=False)  # flags are checked before TensorFlow loads
