"""Training across workers (MultiWorkerMirroredStrategy): the trainer's epochs without
`model.fit`.

Keras 3's `model.fit` and `model.evaluate` do not run under MultiWorkerMirroredStrategy
(keras-team/keras#20585, tensorflow/tensorflow#72388: with TensorFlow 2.21 / Keras 3.15 the
symbolic build reduces the first batch, a tuple of per-replica values, and the step's
`reduce_per_replica` sums a scalar over axis 0; both raise). On one worker the trainer keeps
`model.fit`; across workers it runs `fit` below, the same training written as the search's
loop is (a compiled `strategy.run` step, the optimizer's all-reduce of gradients), and
`evaluate` on each worker without distribution.

The step is the one `model.fit` takes: label-smoothed cross-entropy on the logits (plus
`auxiliary_weight` times that of the auxiliary head, DARTS), averaged over the global batch,
plus the model's own losses; top-1 and top-5 of the logits.
"""

from __future__ import annotations

from typing import Any, Callable


def _losses(num_classes: int, label_smoothing: float, auxiliary_weight: float | None
            ) -> Callable[[Any, Any], tuple[Any, Any]]:
    """(per-example loss, logits) of a model output and integer labels."""
    import keras
    import tensorflow as tf

    cross_entropy = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)

    def losses(outputs: Any, labels: Any) -> tuple[Any, Any]:
        targets = tf.one_hot(labels, num_classes)
        logits = tf.cast(outputs[0] if auxiliary_weight is not None else outputs, tf.float32)
        per_example = cross_entropy(targets, logits)
        if auxiliary_weight is not None:
            per_example += auxiliary_weight * cross_entropy(
                targets, tf.cast(outputs[1], tf.float32))
        return per_example, logits

    return losses


def _hits(logits: Any, labels: Any, num_classes: int) -> tuple[Any, Any]:
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    return tuple(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
                 for k in (1, min(5, num_classes)))


def fit(model: Any, optimizer: Any, strategy: Any, *, batches: Callable[[int], Any],
        steps: int, start_epoch: int, epochs: int, global_batch: int, num_classes: int,
        label_smoothing: float, auxiliary_weight: float | None,
        on_epoch_begin: Callable[[int], None],
        on_epoch_end: Callable[[int, dict[str, float]], None],
        should_stop: Callable[[], bool]) -> bool:
    """Trains epochs `start_epoch`..`epochs - 1` on `batches(epoch)` (global batches of
    (image, int label)); `on_epoch_end(epoch, {loss, top1, top5})` after each. False when a
    stop request (on any worker) ended it early: the epoch under way is not finished."""
    import tensorflow as tf

    from tfnas.run import distribute

    losses = _losses(num_classes, label_smoothing, auxiliary_weight)

    def replica_step(images: Any, labels: Any) -> dict[str, Any]:
        with tf.GradientTape() as tape:
            per_example, logits = losses(model(images, training=True), labels)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        optimizer.apply(tape.gradient(loss, model.trainable_variables),
                        model.trainable_variables)
        top1, top5 = _hits(logits, labels, num_classes)
        return {"loss": loss, "top1": top1 / global_batch, "top5": top5 / global_batch}

    step = tf.function(lambda images, labels: {
        key: strategy.reduce("SUM", value, axis=None)
        for key, value in strategy.run(replica_step, args=(images, labels)).items()},
        autograph=False)
    agreed = distribute.Agreement(strategy)
    for epoch in range(start_epoch, epochs):
        on_epoch_begin(epoch)
        sums = {"loss": 0.0, "top1": 0.0, "top5": 0.0}
        for images, labels in distribute.distribute_dataset(strategy, batches(epoch)):
            for key, value in step(images, labels).items():
                sums[key] += float(value)
            if agreed(should_stop()):  # every worker stops at the same step
                return False
        on_epoch_end(epoch, {key: value / steps for key, value in sums.items()})
    return True


def evaluate(model: Any, dataset: Any, *, num_classes: int, label_smoothing: float
             ) -> dict[str, float]:
    """{loss, top1, top5} of `model` (logits) over every example of `dataset` (image, int
    label), without distribution."""
    import tensorflow as tf

    losses = _losses(num_classes, label_smoothing, None)

    @tf.function(autograph=False)
    def sums(images: Any, labels: Any) -> tuple[Any, Any, Any]:
        per_example, logits = losses(model(images, training=False), labels)
        return (tf.reduce_sum(per_example), *_hits(logits, labels, num_classes))

    total = {"loss": 0.0, "top1": 0.0, "top5": 0.0}
    count = 0
    for images, labels in dataset:
        for key, value in zip(total, sums(images, labels)):
            total[key] += float(value)
        count += int(labels.shape[0])
    return {key: value / max(count, 1) for key, value in total.items()}
