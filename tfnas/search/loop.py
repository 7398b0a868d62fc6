"""The search loop: supernet, data, optimizers, the compiled step, checkpoints and the report.

Single-Path NAS (Stamoulis et al., Eq. 8): one loss trains the supernet's weights and its
thresholds together (single-level). Multi-path methods (DARTS Sec. 2.3, FBNet, ProxylessNAS,
LightNAS) are bi-level: a weight step on CE with a training batch, then an α step on the full
loss with a held-out batch. The loss is CE, plus λ·penalty(R) for a fixed-λ objective, plus
λ_c·(R_c/T_c − 1) for every budget, whose multipliers λ_c are updated inside the step by
gradient ascent (`tfnas.search.objectives`).

TPU-ready (docs/design.md, rule 5): static shapes, `drop_remainder` batches, no Python branching on
tensors, λ, multipliers and kernel dropout held in variables, optional XLA (`jit_compile`),
global-batch-correct loss under any tf.distribute strategy. Resumable (rule 6): weights,
architecture parameters, multipliers, optimizer state, epoch and step are checkpointed, and a
SIGTERM saves before exiting.

Outputs in `model_dir`: arch.json, report.json, search_log.csv (one row per epoch),
search_steps.csv (per step: CE, every budget's R, λ and T; `tfnas.search.records`),
late_window.json (budgeted searches: `tfnas.search.late`), checkpoints (ckpt-*), TensorBoard
events (tb/). Across workers (MultiWorkerMirroredStrategy) only the chief writes them; the
other workers restore from its checkpoints and write to a scratch directory they remove
(`tfnas.run.distribute`), and a stop request on any worker stops all at the same step.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable

from tfnas.run import checkpoints, csvlog, distribute
from tfnas.search import methods
from tfnas.errors import TfnasError
from tfnas.quiet import live_progress
from tfnas.run.files import write_text
from tfnas.run.rundir import Interrupted, Stopwatch
from tfnas.search import late, records
from tfnas.search.config import SearchConfig
from tfnas.search.step import SearchStep
from tfnas.space import Architecture
from tfnas.space.architecture import architecture_from_dict

class Search(SearchStep):
    """Builds the supernet, data, optimizer and checkpoint of a search; `run()` executes it."""

    def __init__(self, config: SearchConfig, strategy: Any = None) -> None:
        import keras
        import tensorflow as tf

        from tfnas import data
        from tfnas.optimizers import StepAdam
        from tfnas.search import supernet

        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.role = distribute.role_of(self.strategy)
        # where this process writes: the run directory, or during `run` a worker's scratch
        self.out_dir = Path(config.model_dir)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise TfnasError(f"batch size {config.batch_size} does not split over {replicas} "
                             "replicas")
        space = config.space
        self.data = data.load_for_space(config.dataset, space, batch_size=config.batch_size,
                                        seed=config.seed)
        if self.data.spec.num_classes != space.num_classes:
            raise TfnasError(f"{config.dataset} has {self.data.spec.num_classes} classes but "
                             f"space {space.name!r} has {space.num_classes}: pick a matching "
                             "space or set --num_classes")
        self.method = methods.get(config.method)
        self.multi_path = self.method.bi_level
        if self.method.arch_update == "second_order" and replicas > 1:
            raise TfnasError(f"--method={config.method} unrolls the weights in place: it runs "
                             "on one device (use darts, first order, across replicas)")
        # bi-level (multi-path): weights on one part of the training set, α on the rest
        self.weight_data, self.arch_data = (self.data.hold_out(config.arch_split)
                                            if self.multi_path else (self.data, None))
        keras.utils.set_random_seed(config.seed)
        self.path_select = _path_select(config.path_select, self.method.layer,
                                        config.jit_compile, replicas,
                                        isinstance(self.strategy, tf.distribute.TPUStrategy),
                                        type(self.strategy).__name__)
        # each budget's multiplier moves lam_rate per epoch at R = 2T (objectives.py)
        self.lam_steps = [c.lam_rate / self.weight_data.steps_per_epoch
                          for c in config.constraints]
        with self.strategy.scope():
            self.model = supernet.build(space, method=config.method, seed=config.seed,
                                        drop_rate=config.kernel_dropout,
                                        dropout=config.dropout,
                                        sync_bn=config.sync_bn and replicas > 1,
                                        temperature=config.temperature[0],
                                        select=self.path_select, nodes=config.nodes,
                                        bottleneck=config.cell_bottleneck,
                                        derived_cells=config.derived_cells,
                                        latency_samples=config.latency_samples,
                                        latency_noise=config.latency_noise)
            self.architecture_variables = supernet.architecture_variables(self.model)
            arch_ids = {id(v) for v in self.architecture_variables}
            # one-level (superkernel): one optimizer trains weights and thresholds together
            self.weight_variables = [v for v in self.model.trainable_variables
                                     if not self.multi_path or id(v) not in arch_ids]
            steps = self.weight_data.steps_per_epoch
            self.optimizer = StepAdam(_schedule(
                config.learning_rate, config.lr_schedule, config.epochs * steps))
            self.optimizer.build(self.weight_variables)
            self.arch_optimizer = None
            if self.multi_path:  # ProxylessNAS: β1 = 0, so α of unsampled paths stay put
                self.arch_optimizer = StepAdam(
                    _schedule(config.arch_learning_rate, config.lr_schedule,
                              (config.epochs - config.warmup_epochs) * steps),
                    beta_1=self.method.arch_beta_1)
                self.arch_optimizer.build(self.architecture_variables)
            # REINFORCE's baseline: a moving average of the sampled networks' rewards (the same
            # on every replica: rewards are summed across them)
            first = tf.VariableAggregation.ONLY_FIRST_REPLICA
            self.baseline = tf.Variable(0.0, trainable=False, name="rl_baseline",
                                        aggregation=first)
            self.baseline_set = tf.Variable(0.0, trainable=False, name="rl_baseline_set",
                                            aggregation=first)
            self.lam = tf.Variable(0.0, trainable=False, name="lam")
            # 1 once the architecture learns (after the warm-up): gates the multipliers
            self.arch_on = tf.Variable(0.0, trainable=False, name="arch_on")
            # the same R on every replica: the first replica's update is everyone's
            self.multipliers = [
                tf.Variable(c.lam_init, trainable=False, name=f"lam_{c.name}",
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                for c in config.constraints]
            self.epoch = tf.Variable(0, trainable=False, dtype=tf.int64, name="epoch")
            self.step = tf.Variable(0, trainable=False, dtype=tf.int64, name="step")
        rng = checkpoints.rng_states(self.model)
        extra = {"arch_optimizer": self.arch_optimizer} if self.multi_path else {}
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              lam=self.lam, epoch=self.epoch, step=self.step,
                                              rng=rng, multipliers=self.multipliers,
                                              arch_on=self.arch_on, baseline=self.baseline,
                                              baseline_set=self.baseline_set, **extra)
        self.manager: Any = None  # restore() opens it
        self._steps: dict[bool, Callable[..., dict[str, Any]]] = {}

    def train_step(self, images: Any, labels: Any, arch_images: Any = None,
                   arch_labels: Any = None) -> dict[str, float]:
        """One step on a global batch (distributed over the strategy's replicas); multi-path
        methods also take an α step on (arch_images, arch_labels), default the same batch."""
        import tensorflow as tf

        batch = (images, labels)
        if self.multi_path:
            batch += (images if arch_images is None else arch_images,
                      labels if arch_labels is None else arch_labels)
        dist = distribute.distribute_dataset(self.strategy, tf.data.Dataset.from_tensors(batch))
        return {k: float(v) for k, v in self._step_function(True)(*next(iter(dist))).items()}

    def _epoch_batches(self, epoch: int) -> Any:
        """The epoch's batches: (images, labels), or with the held-out α batches appended."""
        train = self.weight_data.train(epoch)
        if not self.multi_path:
            return train
        import tensorflow as tf

        arch = self.arch_data.train(epoch).repeat()
        return tf.data.Dataset.zip((train, arch)).map(lambda w, a: (*w, *a))

    def _batches_from(self, epoch: int, step: int) -> Any:
        """The batches of every epoch from `epoch` on, from its step `step` (a resume), one
        dataset: a tf.data iterator of an autotuned pipeline took up to 0.5 s to delete here
        (at each epoch's end: 3-4 s of a 25 s quickstart search), one iterator is deleted once."""
        epochs = [self._epoch_batches(e) for e in range(epoch, self.config.epochs)]
        epochs[0] = epochs[0].skip(step)
        return functools.reduce(lambda a, b: a.concatenate(b), epochs)

    # --- the loop ---------------------------------------------------------------------------

    def restore(self) -> bool:
        """Continues from the newest readable checkpoint in model_dir, if any (a damaged newer
        one is moved aside with one line: `tfnas.run.checkpoints`)."""
        self.manager, restored = checkpoints.open_manager(
            self.checkpoint, self.out_dir,
            source=None if self.role.chief else self.config.model_dir)
        return restored is not None

    def validate(self) -> float:
        """Top-1 of the supernet's current decisions on the validation split.

        Training uses batch statistics only, so the moving BN statistics are first set from
        training images (one pass, `nets.recalibrate_batchnorm`): early in a short search the
        moving averages have not caught up and would understate the accuracy."""
        import tensorflow as tf

        from tfnas import nets

        if not hasattr(self, "_correct_fn"):  # compiled once: eager calls cost seconds
            self._recalibrate = nets.batchnorm_recalibrator(self.model)
            self._correct_fn = tf.function(lambda images, labels: tf.reduce_sum(tf.cast(
                tf.equal(tf.argmax(self.model(images, training=False), -1,
                                   output_type=tf.int32), labels), tf.int32)), autograph=False)
            # the same images every epoch, read once (the pipeline fills its shuffle buffer
            # to give them: up to 10,000 decoded images of a TFDS dataset)
            self._recalibration_images = next(iter(
                self.data.train(0).unbatch().batch(256)))[0]
        self._recalibrate(self._recalibration_images)
        correct = total = 0
        for images, labels in self.data.val():
            correct += int(self._correct_fn(images, labels))
            total += int(labels.shape[0])
        return correct / max(total, 1)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Runs (or resumes) the search; returns the report. Raises Interrupted on stop."""
        with distribute.output_dir(self.role, self.config.model_dir) as self.out_dir:
            return self._run(should_stop)

    def _run(self, should_stop: Callable[[], bool]) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        from tfnas.search import supernet

        config = self.config
        model_dir = self.out_dir
        model_dir.mkdir(parents=True, exist_ok=True)
        resumed = self.restore()
        writer = tf.summary.create_file_writer(str(model_dir / "tb"))
        log_path = model_dir / "search_log.csv"
        clock = Stopwatch(model_dir / "search_seconds.txt")
        steps = self.weight_data.steps_per_epoch
        if config.verbose:
            budgets = "; ".join(c.describe() for c in config.constraints)
            print(f"{'resuming' if resumed else 'starting'} search: {config.method} on "
                  f"{config.dataset} ({self.data.spec.train_examples} train images), space "
                  f"{config.space.name}, {config.epochs} epochs x {steps} steps, "
                  f"{self.strategy.num_replicas_in_sync} replica(s)"
                  + (f" on {self.role.workers} workers" if self.role.workers > 1 else "")
                  + (f"; budgets: {budgets}" if budgets else ""), flush=True)
        # the logs are cut back to the checkpoint: rows written after it are written again
        position = (int(self.epoch.numpy()), int(self.step.numpy()))
        step_log = records.StepLog(model_dir / "search_steps.csv", config.constraints, position)
        csvlog.cut_epochs(log_path, records.LOG_FIELDS, int(self.epoch.numpy()))
        window = self._window(position)
        window_start = late.first_epoch(config.epochs, config.warmup_epochs)
        agreed = distribute.Agreement(self.strategy)

        def flush_logs() -> None:  # the logs first, then the checkpoint that says how far
            step_log.flush()  # they hold
            if window is not None:
                window.flush((int(self.epoch.numpy()), int(self.step.numpy())))

        def save() -> None:
            flush_logs()
            saver.save()

        # epoch ends: checkpointed when due (at most 5% of the run, `EpochCheckpoints`); every
        # one over several workers, which must save together
        saver = checkpoints.EpochCheckpoints(self.manager, int(self.epoch.numpy()),
                                             share=None if self.role.workers > 1 else 0.05)

        batches = None  # one iterator over the epochs left, not one per epoch (see
        # `_batches_from`)
        while int(self.epoch.numpy()) < config.epochs:
            epoch = int(self.epoch.numpy())
            learning = epoch >= config.warmup_epochs
            self.lam.assign(config.objective.lam if learning and config.objective else 0.0)
            self.arch_on.assign(1.0 if learning else 0.0)
            supernet.anneal(self.model, _annealed(config.temperature, epoch, config.epochs),
                            config.kernel_dropout if epoch < config.dropout_epochs else 0.0)
            step_fn = self._step_function(learning)
            first = int(self.step.numpy())
            # the bar: CE and accuracy, the fixed-λ cost term if there is one, and each
            # budget's R and multiplier (negative for a target while the network is under it:
            # the term then pushes the cost up); redirected output gets the epoch line only
            fixed = [("cost", "cost"), ("lam", None)] if config.objective else []
            shown = [name for name, _ in fixed] + [f"{k}_{c.name}" for c in config.constraints
                                                   for k in ("R", "lam")]
            live = config.verbose and live_progress()
            bar = keras.utils.Progbar(steps, verbose=1 if live else 0, stateful_metrics=shown)
            epoch_start = time.time()
            if batches is None:
                batches = iter(distribute.distribute_dataset(
                    self.strategy, self._batches_from(epoch, first)))
            for i, batch in enumerate(itertools.islice(batches, steps - first), start=first):
                terms = {k: float(v) for k, v in step_fn(*batch).items()}
                self.step.assign(i + 1)
                lams = [float(v.numpy()) for v in self.multipliers]
                step_log.write(epoch, i, terms, lams)
                if window is not None and epoch >= window_start:
                    window.update(*self._snapshot())
                bar.update(i + 1, [("ce", terms["ce"]), ("acc", terms["accuracy"])]
                           + [(name, terms[key] if key else float(self.lam.numpy()))
                              for name, key in fixed]
                           + [(f"{k}_{c.name}", v) for c, lam in zip(config.constraints, lams)
                              for k, v in (("R", terms[f"cost_{c.name}"]), ("lam", lam))])
                if agreed(should_stop()):  # every worker stops at the same step
                    save()
                    clock.save()
                    raise Interrupted(f"stopped at epoch {epoch} step {i + 1}; checkpoint saved"
                                      f" in {config.model_dir}: run the same command to resume")
                if (i + 1) % config.checkpoint_every == 0:
                    save()
            arch = supernet.derive(self.model, config.derived_space)
            means = step_log.epoch_means(epoch)  # every step of the epoch, over resumes
            row = {"epoch": epoch, "ce": means["ce"], "accuracy": means["accuracy"],
                   "val_accuracy": self.validate(),
                   "cost": float(supernet.expected_cost(self.model, config.cost_model)),
                   "lam": float(self.lam.numpy()), "seconds": time.time() - epoch_start,
                   "arch": arch.brief()}
            records.append_log(log_path, row)
            with writer.as_default(step=epoch):
                for key in ("ce", "accuracy", "val_accuracy", "cost", "lam"):
                    tf.summary.scalar(key, row[key])
                for c, lam in zip(config.constraints, self.multipliers):
                    tf.summary.scalar(f"lam_{c.name}", float(lam.numpy()))
                    tf.summary.scalar(f"{c.name}_of_derived", c.cost_model.of(arch))
            writer.flush()  # on disk each epoch (TensorBoard live; nothing left at exit)
            self.epoch.assign(epoch + 1)
            self.step.assign(0)
            if saver.due(last=epoch + 1 == config.epochs):
                save()
            clock.save()
            if config.verbose:
                budgets = "".join(f", {c.name} of the derived net {c.cost_model.of(arch):.4g} "
                                  f"{c.cost_model.unit} (λ {float(lam.numpy()):.3g})"
                                  for c, lam in zip(config.constraints, self.multipliers))
                print(f"epoch {epoch}: val accuracy {row['val_accuracy']:.3f}, "
                      f"{config.cost_model.name} {row['cost']:.4g} {config.cost_model.unit}"
                      f"{budgets}", flush=True)
        return self._finish(clock.seconds())

    def _finish(self, seconds: float) -> dict[str, Any]:
        from tfnas.search import budget, supernet

        config = self.config
        arch = supernet.derive(self.model, config.derived_space)
        window = self._window()
        if window is not None and window.steps:  # what the search held while it settled
            arch, scores = window.choose(config.constraints, config.target_tolerance), \
                window.scores()
        else:
            scores = supernet.op_scores(self.model)
        derived = arch
        moves: list[budget.Move] = []
        if config.repair and config.constraints:
            arch, moves = budget.solve(arch, scores, config.constraints,
                                       config.target_tolerance)
        self._answer = {"derived": derived, "scores": scores, "seconds": seconds,
                        "late_window": window.describe(derived) if window is not None else None}
        return self._write_report(arch, moves)

    def _write_report(self, arch: Architecture, moves: list[Any],
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Writes arch.json and report.json for `arch` (the solver's `moves` from the search's
        own network) and returns the report."""
        config, answer = self.config, self._answer
        derived = answer["derived"]
        model_dir = self.out_dir
        arch.save(model_dir / "arch.json")
        timed = config.timed  # the budget a device measures, if any
        latency_model = config.cost_model if config.cost_model.timed else (
            timed.cost_model if timed else None)
        report = {
            "method": config.method, "space": config.space.name, "dataset": config.dataset,
            **({"eval_space": config.eval_space.name} if config.eval_space else {}),
            "cost": config.objective.kind if config.objective else None,
            "lam": config.objective.lam if config.objective else None,
            "cost_metric": config.cost_model.name, "cost_unit": config.cost_model.unit,
            "target_ms": timed.target if timed else None,
            "latency_model": config.latency_source,
            "predicted_ms": latency_model.of(arch) if latency_model else None,
            "predicted_cost": config.cost_model.of(arch),
            "params": arch.params(), "flops": arch.flops(),
            "budgets": [records.budget_report(
                c, arch, derived, self.step_log_path, config.target_tolerance,
                measured=(extra or {}).get("measured_ms") if c is timed else None)
                for c in config.constraints],
            "repaired": records.repair_report(moves, derived),
            "late_window": answer["late_window"], "lug": self._lug_outcome(arch),
            "search_seconds": round(answer["seconds"], 2), "epochs": config.epochs,
            **(extra or {}), "arch": arch.to_dict()}
        write_text(model_dir / "report.json", json.dumps(report, indent=1) + "\n")
        return report

    def _lug_outcome(self, arch: Any) -> dict[str, Any] | None:
        """With a lookup graph: the device budget, the budget searched, and whether the
        returned network meets the device budget."""
        lug = self.config.lug
        if lug is None:
            return None
        (c,) = [c for c in self.config.constraints if c.name == lug["metric"]]
        cost = c.cost_model.of(arch)
        return {**lug, "derived": cost, "holds": cost <= lug["device_budget"]}

    def match_measured(self, report: dict[str, Any],
                       measure: Callable[[Architecture], float]) -> dict[str, Any]:
        """After `run`: the returned network measured on the device with `measure` (ms, in the
        table's units); where that misses the latency budget, the budget is rescaled by the
        measured/predicted ratio and solved again (`budget.match_measured`). Rewrites
        arch.json and report.json (`measured_ms`, and `measured_networks` when it re-solved)."""
        from tfnas.search import budget

        config = self.config
        arch = architecture_from_dict(report["arch"])
        timed = config.timed
        if timed is None or not config.repair:
            return self._write_report(arch, self._moves(arch), {"measured_ms": measure(arch)})
        returned = budget.Measured(arch, timed.cost_model.of(arch), measure(arch))
        kept, tried = budget.match_measured(
            self._answer["derived"], returned, self._answer["scores"], config.constraints,
            config.target_tolerance, measure)
        extra: dict[str, Any] = {"measured_ms": kept.measured}
        if len(tried) > 1:
            extra["measured_networks"] = [t.to_dict() for t in tried]
        return self._write_report(kept.arch, self._moves(kept.arch), extra)

    def _moves(self, arch: Architecture) -> list[Any]:
        from tfnas.search import budget

        return budget.moves(self._answer["derived"], arch, self._answer["scores"],
                            self.config.constraints)

    def _window(self, position: tuple[int, int] | None = None) -> late.LateWindow | None:
        """The late window's record (budgeted searches only) at `position` (epoch, step): as
        the checkpoint there left it; default, the last one saved."""
        if not self.config.constraints or self.config.cells:
            return None  # (the late window holds networks of layers, not cells)
        return late.LateWindow(self.out_dir / late.FILE, self.config.space, position)

    def _snapshot(self) -> tuple[Any, Any]:
        """(one-hot of the network the search would return, the relaxation's probabilities),
        L x K each, from one compiled call."""
        if not hasattr(self, "_snapshot_fn"):
            import tensorflow as tf

            from tfnas.search import supernet

            space = self.config.space
            self._snapshot_fn = tf.function(lambda: (
                supernet.soft_one_hot(self.model, space, "decided"),
                supernet.soft_one_hot(self.model, space, "relaxed")), autograph=False)
        hard, relaxed = self._snapshot_fn()
        return hard.numpy(), relaxed.numpy()

    @property
    def step_log_path(self) -> Path:
        return self.out_dir / "search_steps.csv"


def _schedule(rate: float, kind: str, steps: int) -> Any:
    """A constant learning rate, or cosine decay to 0 over the optimizer's `steps` (the
    architecture then settles as the search ends, instead of flipping between networks on
    either side of a budget)."""
    if kind == "constant":
        return rate
    import keras

    return keras.optimizers.schedules.CosineDecay(rate, decay_steps=max(steps, 1))


def _annealed(temperature: tuple[float, float], epoch: int, epochs: int) -> float:
    """Gumbel τ of an epoch: exponential from the first value to the last (FBNet Sec. 3.3)."""
    start, end = temperature
    return start * (end / start) ** (epoch / max(epochs - 1, 1))


def _path_select(asked: str, layer: str, jit_compile: bool, replicas: int, on_tpu: bool,
                 strategy: str) -> str:
    """How one-path mixed ops (and derived cells) run the chosen path (`MixedOp`'s `select`).

    `auto`: mixed ops gather the chosen path's weights into one MBConv (the memory of one
    network, no conditional). Cells (no gathering) and an explicit `switch` run a conditional,
    which XLA's CPU and GPU backends compile as plain loops (minutes per layer), and whose batch
    norm MirroredStrategy cannot synchronise (a merge_call inside a conditional): the mask
    there, off TPUs. One line for a choice that cannot run."""
    if asked == "gather" and layer == "cell":
        raise TfnasError("--path_select=gather is for layer spaces (MBConv mixed ops); derived "
                         "cells run switch or mask (or auto)")
    if asked == "auto":
        if layer != "cell":  # (the superkernel has no paths to select)
            return "gather"
        return "mask" if (jit_compile or replicas > 1) and not on_tpu else "switch"
    if asked == "switch" and replicas > 1 and not on_tpu:
        raise TfnasError(f"--path_select=switch runs batch norm inside a conditional, which "
                         f"{strategy} cannot synchronise across its {replicas} replicas: use "
                         "--path_select=gather or mask (or auto)")
    return asked
