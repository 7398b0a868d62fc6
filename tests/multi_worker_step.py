"""Helper run in subprocesses by test_multi_worker: the first search step's loss, cost and
threshold gradients on one global batch, as one worker of MultiWorkerMirroredStrategy
(`TF_CONFIG` set by the test: two workers on loopback) or, with `single`, in one process
under the default strategy (the strategy must be created before TensorFlow runs anything,
hence a process each). Prints one JSON object (the chief only, under the strategy).
"""

from __future__ import annotations

import json
import sys
import tempfile


def main() -> None:
    import tensorflow as tf

    from distributed_step import first_step
    from tfnas.run import distribute

    single = sys.argv[1:] == ["single"]
    strategy = (tf.distribute.get_strategy() if single
                else distribute.strategy_for(None, "multi_worker"))
    role = distribute.role_of(strategy)
    with tempfile.TemporaryDirectory() as folder:
        result = first_step(strategy, sync_bn=not single, folder=folder + "/run")
    if role.chief:
        print(json.dumps({**result, "workers": role.workers}))


if __name__ == "__main__":
    sys.exit(main())
