"""Helper run in a subprocess by test_search: the first search step's loss, cost and threshold
gradients under the default strategy and under MirroredStrategy on two logical CPU devices
(which must be configured before TensorFlow starts, hence the separate process).

Prints one JSON object: {"default": {...}, "mirrored": {...}, "mirrored_unsynced": {...},
"default_gumbel": {...}, "mirrored_gumbel": {...}}.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile

import numpy as np


def first_step(strategy, sync_bn: bool, folder: str, method: str = "superkernel") -> dict:
    import tensorflow as tf

    from tfnas.costs import CostModel
    from tfnas.search.objectives import Objective
    from tfnas.search import Search, SearchConfig
    from conftest import small_space

    space = small_space()  # two searchable layers: three first steps compile in seconds
    config = SearchConfig(space=space, dataset="digits", cost_model=CostModel.flops(space),
                          objective=Objective("log", 0.5), model_dir=folder, batch_size=32,
                          seed=3, sync_bn=sync_bn, dropout=0.0, verbose=False, method=method)
    search = Search(config, strategy)
    search.lam.assign(config.objective.lam)
    images, labels = next(iter(search.data.train(0)))
    variables = search.architecture_variables

    def replica(images, labels):
        with tf.GradientTape() as tape:
            terms = search.loss_terms(images, labels)
        return terms, tape.gradient(terms["loss"], variables)

    @functools.partial(tf.function, autograph=False)
    def run(dist_images, dist_labels):
        terms, grads = search.strategy.run(replica, args=(dist_images, dist_labels))

        def reduce(x):
            return search.strategy.reduce("SUM", x, axis=None)

        return ({k: reduce(v) for k, v in terms.items()}, [reduce(g) for g in grads])

    dist = search.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((images, labels)))
    terms, grads = run(*next(iter(dist)))
    return {"replicas": search.strategy.num_replicas_in_sync, "path_select": search.path_select,
            "loss": float(terms["loss"]), "ce": float(terms["ce"]),
            "cost": float(terms["cost"]),
            "grads": np.concatenate([np.ravel(g) for g in grads]).tolist()}


def main() -> None:
    import tensorflow as tf

    from tfnas.run import distribute

    distribute.split_cpu(2)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["default"] = first_step(tf.distribute.get_strategy(), False, folder + "/a")
        mirrored = distribute.strategy_for(None)
        assert isinstance(mirrored, tf.distribute.MirroredStrategy), mirrored
        results["mirrored"] = first_step(mirrored, True, folder + "/b")
        results["mirrored_unsynced"] = first_step(mirrored, False, folder + "/c")
        # one path per step (hard Gumbel), gathered: its batch norm syncs across replicas
        results["default_gumbel"] = first_step(tf.distribute.get_strategy(), False,
                                               folder + "/d", "gumbel")
        results["mirrored_gumbel"] = first_step(mirrored, True, folder + "/e", "gumbel")
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
