"""The tf.distribute strategy of a run, and which worker of it this process is.

`--tpu=NAME` (or `local` on a TPU VM, or a grpc:// address) connects to the TPU and uses
TPUStrategy (a pod slice's hosts each run the same command with `--tpu=local`). Without it,
`--strategy=auto` uses MirroredStrategy when the host has several devices of one kind (GPUs,
or logical CPU devices set up for tests), else the default strategy (docs/design.md, rule 5);
`--strategy=multi_worker` uses MultiWorkerMirroredStrategy across the processes `TF_CONFIG`
names (one process per host, each running the same command with its own `task`).

Across workers one process is the chief (task `chief`, or `worker` 0 when the cluster has no
chief): it alone owns the run directory and writes its outputs. The others (`Role.chief`
False) compute the same steps, restore from the chief's checkpoints (a file system every
worker reads: the model_dir on a shared disk) and write their own checkpoint copies, which
TensorFlow needs every worker to take part in, to a scratch directory they remove.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tfnas.errors import TfnasError, error_line

PRECISIONS = ("float32", "mixed_bfloat16")
PRECISION_FLAG_CHOICES = ("auto",) + PRECISIONS
STRATEGIES = ("auto", "multi_worker")
STRATEGY_HELP = ("auto: TPUStrategy with --tpu, else MirroredStrategy over this host's GPUs "
                 "(or the default strategy); multi_worker: MultiWorkerMirroredStrategy over "
                 "the workers TF_CONFIG names, each running this same command (only the "
                 "chief writes --model_dir, which every worker must be able to read).")


@dataclasses.dataclass(frozen=True)
class Role:
    """This process's place among the workers of a run (one worker: the chief)."""

    index: int = 0  # 0 for the chief, then the other workers in TF_CONFIG's order
    workers: int = 1
    chief: bool = True


def cluster_role() -> Role:
    """The Role that `TF_CONFIG` gives this process; one TfnasError (naming the variable) when
    it is missing or is not a cluster with this task in it. Pure Python: checked before
    TensorFlow loads."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise TfnasError("--strategy=multi_worker needs TF_CONFIG: set it on each worker to "
                         '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": '
                         '{"type": "worker", "index": I}} (README, "Beyond one machine")')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        kind, index = task["type"], int(task["index"])
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
        if kind not in ("chief", "worker"):
            raise ValueError(f"task type {kind!r} (chief or worker)")
        hosts = chiefs if kind == "chief" else workers
        if not 0 <= index < len(hosts):
            raise ValueError(f"task {kind} {index}: the cluster has {len(hosts)} {kind}(s)")
        if len(chiefs) > 1:
            raise ValueError("more than one chief")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise TfnasError(f"TF_CONFIG is not a usable cluster ({error_line(err)}): "
                         '{"cluster": {"worker": ["host1:port", ...]}, "task": {"type": '
                         '"worker", "index": I}} expected') from None
    return _role(kind, index, len(chiefs), len(workers))


def _role(kind: str, index: int, chiefs: int, workers: int) -> Role:
    """The Role of task `kind` `index` in a cluster of `chiefs` chief and `workers` worker
    tasks: the chief first, then the workers in order."""
    position = index if kind == "chief" else chiefs + index
    return Role(index=position, workers=chiefs + workers, chief=position == 0)


def planned_role(kind: str, tpu: str | None) -> Role:
    """The Role a run with `--strategy=kind` will have, checked before TensorFlow loads (one
    TfnasError for --tpu with multi_worker, or a missing or broken TF_CONFIG)."""
    if kind not in STRATEGIES:
        raise TfnasError(f"unknown strategy {kind!r}: choose {', '.join(STRATEGIES)}")
    if kind != "multi_worker":
        return Role()
    if tpu:
        raise TfnasError("--strategy=multi_worker is for CPU and GPU hosts: a TPU pod "
                         "slice runs under --tpu (each host with --tpu=local)")
    return cluster_role()


def role_of(strategy: Any) -> Role:
    """The Role of this process under `strategy` (the chief unless it spans workers)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not spec or resolver.task_type not in ("chief", "worker"):
        return Role()
    return _role(resolver.task_type, resolver.task_id, len(spec.get("chief", [])),
                 len(spec.get("worker", [])))


@contextlib.contextmanager
def output_dir(role: Role, model_dir: str | Path) -> Iterator[Path]:
    """Where this process writes a run's files: the chief, `model_dir`; another worker, a
    scratch directory (its checkpoint copies, which TensorFlow has every worker write), removed
    when the run ends however it ends."""
    if role.chief:
        yield Path(model_dir)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"tfnas-worker{role.index}-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def sharded_by_data(dataset: Any) -> Any:
    """`dataset` (global batches) marked to be split over workers by data, not by file: every
    worker builds the same pipeline (same seeds) and keeps its share of each global batch, so
    a step sees exactly the batch one process would and a resumed run skips the same batches.
    (With many hosts reading ImageNet, each host then decodes every image: the price of that
    exactness.)"""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = \
        tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def distribute_dataset(strategy: Any, dataset: Any) -> Any:
    """`dataset` (global batches) split over the strategy's replicas (`sharded_by_data`)."""
    return strategy.experimental_distribute_dataset(sharded_by_data(dataset))


class Agreement:
    """`agreement(flag)`: True when `flag` is True on any worker (one small compiled all-reduce;
    no communication on one worker). Workers of one run must stop at the same step, or the
    others wait for ever in the next step's all-reduce: a stop request (SIGTERM to one of
    them) goes through this."""

    def __init__(self, strategy: Any) -> None:
        self.strategy = strategy
        self.workers = role_of(strategy).workers
        self._vote: Any = None

    def __call__(self, flag: bool) -> bool:
        if self.workers == 1:
            return flag
        import tensorflow as tf

        if self._vote is None:
            strategy = self.strategy
            self._vote = tf.function(lambda x: strategy.reduce(
                "SUM", strategy.run(lambda: tf.identity(x)), axis=None), autograph=False)
        return float(self._vote(tf.constant(1.0 if flag else 0.0))) > 0


def resolve_precision(precision: str, tpu: str | None) -> str:
    """`auto`: bfloat16 compute on a TPU (what its matrix units run at full rate), else
    float32."""
    if precision == "auto":
        return "mixed_bfloat16" if tpu else "float32"
    return precision


def strategy_for(tpu: str | None = None, kind: str = "auto") -> Any:
    import tensorflow as tf

    planned_role(kind, tpu)  # a bad kind or TF_CONFIG: one line
    if kind == "multi_worker":  # every worker's replicas (GPUs, or its CPU) in each all-reduce
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tpu:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as err:  # unknown names, no metadata server, unreachable hosts...
            raise TfnasError(f"cannot reach TPU {tpu!r}: {error_line(err)} (--tpu names a "
                             "Cloud TPU, 'local' on a TPU VM, or grpc://HOST:PORT)") from None
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def prepare(precision: str, tpu: str | None, deterministic: bool, kind: str = "auto") -> Any:
    """What an entry point sets up before it builds a model: deterministic ops (a resumed run
    ends where an uninterrupted one does), the dtype policy, and the strategy it runs under."""
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    set_precision(precision)
    return strategy_for(tpu, kind)


def set_precision(precision: str) -> None:
    """Global Keras dtype policy: float32, or bfloat16 compute with float32 variables."""
    import keras

    if precision not in PRECISIONS:
        raise TfnasError(f"unknown precision {precision!r}: choose {', '.join(PRECISIONS)}")
    keras.mixed_precision.set_global_policy(precision)


def split_cpu(count: int) -> None:
    """Makes `count` logical CPU devices (before TensorFlow initialises its devices)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
