"""Is a Single-Path search step as cheap as training one network? Times both on one batch.

    python bench/search_step_cost.py [--space=cifar] [--batch_size=64] [--steps=20]

Times, alternately in one run, (a) one search step of the superkernel supernet (forward,
expected cost, backward, update of weights and thresholds) and (b) one training step of the
largest child network (every layer at its biggest kernel and expansion) on the same batch with
the same optimizer, and prints the medians and their ratio (the design asks for <= 1.3).
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "cifar", "Search space preset.")
flags.DEFINE_integer("batch_size", 64, "Batch size of both steps.")
flags.DEFINE_integer("steps", 20, "Timed steps of each kind (after 3 warm-up steps).")


def main(argv: list[str]) -> None:
    import keras
    import tensorflow as tf

    from tfnas import nets
    from tfnas.costs import CostModel
    from tfnas.objectives import Objective
    from tfnas.search import Search, SearchConfig
    from tfnas.space import Architecture, Op, get_space

    space = get_space(FLAGS.space)
    with tempfile.TemporaryDirectory() as folder:
        search = Search(SearchConfig(
            space=space, dataset="synthetic", cost_model=CostModel.flops(space),
            objective=Objective("log", 0.02), model_dir=folder, batch_size=FLAGS.batch_size,
            verbose=False))
    search.lam.assign(0.02)
    images, labels = next(iter(search.data.train(0)))

    largest = Architecture.uniform(space, Op(max(space.kernels), max(space.expansions)))
    child = nets.build(largest)
    optimizer = keras.optimizers.Adam(0.01)
    optimizer.build(child.trainable_variables)

    @tf.function
    def child_step(images, labels):
        with tf.GradientTape() as tape:
            logits = child(images, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                labels, logits, from_logits=True))
        grads = tape.gradient(loss, child.trainable_variables)
        optimizer.apply(grads, child.trainable_variables)
        return loss

    def timed(fn) -> float:
        start = time.perf_counter()
        result = fn(images, labels)
        float(result["loss"] if isinstance(result, dict) else result)  # wait for the step
        return time.perf_counter() - start

    for _ in range(3):
        timed(search._train_step)
        timed(child_step)
    search_times, child_times = [], []
    for _ in range(FLAGS.steps):  # alternate, so drifts of the host hit both alike
        search_times.append(timed(search._train_step))
        child_times.append(timed(child_step))
    s, c = np.median(search_times) * 1e3, np.median(child_times) * 1e3
    print(f"space {space.name}, batch {FLAGS.batch_size}, {FLAGS.steps} steps each, "
          f"supernet {search.model.count_params():,} params, largest child "
          f"{child.count_params():,} params")
    print(f"search step (superkernel):   median {s:8.1f} ms")
    print(f"train step (largest child):  median {c:8.1f} ms")
    print(f"ratio search / child: {s / c:.3f}")


if __name__ == "__main__":
    cli.run(main)
