"""Top-1 accuracy of .tflite models on a dataset's validation split.

    python tools/evaluate_tflite.py --model=net.tflite --model=net_int8.tflite --dataset=digits

Each model must carry its architecture (tfnas exports do), which gives the input size; the
validation split is the one `python -m tfnas.train` reports on (same --seed). Prints a table
(or JSON with --json): model, top-1, size.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from tfnas import cli

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("model", None, ".tflite model to evaluate (repeat for more).")
flags.DEFINE_string("dataset", "digits", "Dataset whose validation split is used.")
flags.DEFINE_integer("seed", 0, "Seed of the split (as in the trainer).")
flags.DEFINE_bool("json", False, "Print JSON on stdout instead of a table.")
flags.mark_flag_as_required("model")


def main(argv: list[str]) -> None:
    from tfnas import data
    from tfnas.deploy import accuracy
    from tfnas.errors import TfnasError
    from tfnas.deploy.export import read_architecture

    data.check_spec(FLAGS.dataset)
    archs = [read_architecture(path) for path in FLAGS.model]  # check all files first
    for path, arch in zip(FLAGS.model, archs):
        if arch is None:
            raise TfnasError(f"{path} carries no tfnas architecture: export it with "
                             "tools/export_tflite.py")
        try:  # the dataset must fit the model's channels (its classes: validation_split)
            data.check_spec(FLAGS.dataset, channels=arch.space.input_channels)
        except TfnasError as err:
            raise TfnasError(f"{path}: {err}") from None
    cli.import_tensorflow_quietly()
    splits: dict = {}
    rows = []
    for path, arch in zip(FLAGS.model, archs):
        key = json.dumps(arch.space.to_dict(), sort_keys=True)  # one split per space
        if key not in splits:
            splits[key] = accuracy.validation_split(FLAGS.dataset, arch.space, FLAGS.seed)
        images, labels = splits[key]
        rows.append({"model": path, "top1": accuracy.tflite_top1(path, images, labels),
                     "examples": int(len(labels)), "size_bytes": Path(path).stat().st_size})
    if FLAGS.json:
        print(json.dumps({"dataset": FLAGS.dataset, "models": rows}, indent=1))
        return
    print(f"{'model':48s} {'top-1':>7s} {'MB':>6s}   ({rows[0]['examples']} {FLAGS.dataset} "
          "validation images)")
    for row in rows:
        print(f"{row['model'][-48:]:48s} {row['top1']:7.4f} {row['size_bytes'] / 1e6:6.3f}")


if __name__ == "__main__":
    cli.run(main)
