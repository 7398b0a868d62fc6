"""The tf.distribute strategy of a run: TPUStrategy, MirroredStrategy or the default.

`--tpu=NAME` (or `local`, or a grpc:// address) connects to the TPU and uses TPUStrategy.
Without it, MirroredStrategy is used when the host has several devices of one kind (GPUs, or
logical CPU devices set up for tests), else the default strategy (docs/design.md, rule 5).
"""

from __future__ import annotations

from typing import Any

from tfnas.errors import TfnasError, error_line

PRECISIONS = ("float32", "mixed_bfloat16")
PRECISION_FLAG_CHOICES = ("auto",) + PRECISIONS


def resolve_precision(precision: str, tpu: str | None) -> str:
    """`auto`: bfloat16 compute on a TPU (what its matrix units run at full rate), else
    float32."""
    if precision == "auto":
        return "mixed_bfloat16" if tpu else "float32"
    return precision


def strategy_for(tpu: str | None = None) -> Any:
    import tensorflow as tf

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


def prepare(precision: str, tpu: str | None, deterministic: bool) -> Any:
    """What an entry point sets up before it builds a model: deterministic ops (a resumed run
    ends where an uninterrupted one does), the dtype policy, and the strategy it runs under."""
    import tensorflow as tf

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    set_precision(precision)
    return strategy_for(tpu)


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
