"""Write an architecture JSON: a uniform, listed or random network of a search space, or a
network of DARTS cells from a genotype (published name, or a file of its text or JSON).

    python tools/make_arch.py --space=single_path --op=mbconv_k3_e6 --out=mbv2.json
    python tools/make_arch.py --space=tiny --sample_seed=3 --out=random.json
    python tools/make_arch.py --genotype=darts_v2 --space=darts_cifar --out=darts.json
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
flags.DEFINE_string("genotype", None, "A DARTS cell genotype: darts_v1, darts_v2, "
                    "pc_darts_cifar, pc_darts_imagenet, or a file of its text (Genotype(normal="
                    "[...], ...)) or JSON. --space then names the cell network: darts_search, "
                    "darts_cifar (default), darts_imagenet, darts28_search, darts28.")
cli.define_cell_flags()
flags.DEFINE_bool("auxiliary", None, "Cell networks: with DARTS' auxiliary head.")


def main(argv: list[str]) -> None:
    from tfnas.errors import TfnasError
    from tfnas.space import Architecture, parse_ops

    from tfnas.run.rundir import check_output

    if FLAGS.out:
        check_output(FLAGS.out, "--out")
    given = [x for x in (FLAGS.op, FLAGS.ops, FLAGS.sample_seed) if x is not None]
    if FLAGS.genotype is not None:
        arch = _cell_network(given)
    elif len(given) != 1:
        raise TfnasError("give exactly one of --op, --ops, --sample_seed or --genotype")
    elif FLAGS.op is not None:
        arch = Architecture.uniform(cli.space_from_flags(FLAGS), FLAGS.op)
    elif FLAGS.ops is not None:
        arch = Architecture(cli.space_from_flags(FLAGS), tuple(parse_ops(FLAGS.ops)))
    else:
        arch = Architecture.sample(cli.space_from_flags(FLAGS), FLAGS.sample_seed)
    if FLAGS.out:
        arch.save(FLAGS.out)
        print(arch.table())
        print(f"wrote {FLAGS.out}")
    else:
        print(arch.to_json())


def _cell_network(given: list) -> object:
    """The --genotype's cells in the --space network (default darts_cifar)."""
    from tfnas.errors import TfnasError
    from tfnas.space.cells import cell_architecture

    if given:
        raise TfnasError("--genotype writes a network of cells: leave out --op, --ops and "
                         "--sample_seed")
    network = cli.cell_network_from_flags(
        FLAGS, FLAGS.space if FLAGS["space"].present else "darts_cifar",
        auxiliary=FLAGS.auxiliary)
    return cell_architecture(network, FLAGS.genotype)


if __name__ == "__main__":
    cli.run(main)
