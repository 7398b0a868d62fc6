"""Write an architecture JSON: a uniform, listed or random network of a search space.

    python tools/make_arch.py --space=single_path --op=mbconv_k3_e6 --out=mbv2.json
    python tools/make_arch.py --space=tiny --sample_seed=3 --out=random.json
"""

from __future__ import annotations

from absl import flags

from tfnas import cli

FLAGS = flags.FLAGS
cli.define_space_flags()
flags.DEFINE_string("op", None, "One op for every layer, e.g. mbconv_k3_e6 (MobileNetV2-like).")
flags.DEFINE_string("ops", None, "Comma-separated op per layer.")
flags.DEFINE_integer("sample_seed", None, "Sample every layer uniformly with this seed.")
flags.DEFINE_string("out", None, "Where to write the JSON (default: print it).")


def main(argv: list[str]) -> None:
    from tfnas.errors import TfnasError
    from tfnas.space import Architecture, parse_ops

    from tfnas.run.rundir import check_output

    if FLAGS.out:
        check_output(FLAGS.out, "--out")
    space = cli.space_from_flags(FLAGS)
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
    cli.run(main)
