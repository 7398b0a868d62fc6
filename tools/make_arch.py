"""Write an architecture JSON: a uniform, listed or random network of a search space.

    python tools/make_arch.py --space=single_path --op=mbconv_k3_e6 --out=mbv2.json
    python tools/make_arch.py --space=tiny --sample_seed=3 --out=random.json
"""

from __future__ import annotations

from tfnas import cli
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("space", "tiny", "Search space preset.")
flags.DEFINE_string("op", None, "One op for every layer, e.g. mbconv_k3_e6 (MobileNetV2-like).")
flags.DEFINE_string("ops", None, "Comma-separated op per layer.")
flags.DEFINE_integer("sample_seed", None, "Sample every layer uniformly with this seed.")
flags.DEFINE_float("width_multiplier", None, "Override the space's width multiplier.")
flags.DEFINE_integer("input_size", None, "Override the space's input size.")
flags.DEFINE_integer("num_classes", None, "Override the space's number of classes.")
flags.DEFINE_string("out", None, "Where to write the JSON (default: print it).")


def main(argv: list[str]) -> None:
    from tfnas.errors import TfnasError
    from tfnas.space import Architecture, get_space, parse_ops

    space = get_space(FLAGS.space, input_size=FLAGS.input_size,
                      width_multiplier=FLAGS.width_multiplier, num_classes=FLAGS.num_classes)
    given = [x for x in (FLAGS.op, FLAGS.ops, FLAGS.sample_seed) if x is not None]
    if len(given) != 1:
        raise TfnasError("give exactly one of --op, --ops or --sample_seed")
    if FLAGS.op is not None:
        arch = Architecture.uniform(space, FLAGS.op)
    elif FLAGS.ops is not None:
        arch = Architecture(space, tuple(parse_ops(FLAGS.ops)))
    else:
        arch = Architecture.sample(space, FLAGS.sample_seed)
    if FLAGS.out:
        arch.save(FLAGS.out)
        print(arch.table())
        print(f"wrote {FLAGS.out}")
    else:
        print(arch.to_json())


if __name__ == "__main__":
    cli.run(main, tensorflow=False)
