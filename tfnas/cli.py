"""Shared plumbing of the absl entry points: one-line errors, exit code 2, quiet TensorFlow.

Every entry point ends with `cli.run(main)`. Bad flags (absl parse or validator errors) and
`TfnasError`s raised anywhere below `main` print `error: <message>` on one line to stderr and
exit with code 2, before any heavy work starts (docs/design.md, rule 7).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from tfnas.quiet import silence_tensorflow

silence_tensorflow()  # entry points import this module before TensorFlow

from absl import app, flags  # noqa: E402

from tfnas.errors import TfnasError, error_line, missing_file  # noqa: E402

if TYPE_CHECKING:
    from tfnas.latency.meter import Meter
    from tfnas.space import SearchSpace


def fail(message: str) -> NoReturn:
    """Prints one line and exits with code 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


HELP_OPTIONS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


def _parse_flags(argv: Sequence[str]) -> list[str]:
    if any(arg in HELP_OPTIONS for arg in argv[1:]):
        print_help(argv[0])
        sys.exit(0)
    for arg in argv[1:]:  # absl's own message is "ERROR:: Unable to open flagfile: [Errno 2]..."
        if arg.startswith("--flagfile="):
            from pathlib import Path

            path = Path(arg.split("=", 1)[1])
            if not path.is_file():
                fail(str(missing_file(path, "--flagfile")))
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as err:
        fail(error_line(err).removeprefix("ERROR:: "))


def print_help(program: str) -> None:
    """The entry point's docstring and every flag it takes (absl's own left out)."""
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or "").strip()
    print(doc or program)
    groups = [(module, defined) for module, defined in
              flags.FLAGS.flags_by_module_dict().items()
              if defined and not module.startswith("absl")]
    own = [g for g in groups if g[0] == "__main__" or g[0].endswith(".py")]
    labels = {"tfnas.sweep": "sweep flags", "tfnas.search.flags": "search flags",
              "tfnas.train.command": "training flags", "tfnas.cli": "shared flags"}
    order = list(labels)  # the command's own flags first, the shared ones last
    rest = sorted((g for g in groups if g not in own),
                  key=lambda g: order.index(g[0]) if g[0] in order else len(order))
    for module, defined in own + rest:
        print(f"\n{labels.get(module, 'flags' if (module, defined) in own else module)}:")
        for flag in sorted(defined, key=lambda f: f.name):
            default = "" if flag.default is None else f" (default: {flag.default_as_str})"
            print(f"  --{flag.name}: {flag.help}{default}")
    print("\n  --flagfile=FILE: read flags from FILE, one per line (# starts a comment)")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and initialises its devices with the C++ start-up chatter (CUDA stubs,
    cuInit failures on CPU-only hosts) captured; shown only if the import fails."""
    from tfnas.quiet import captured_output

    with captured_output() as log:
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        except Exception as err:
            failure = err
        else:
            failure = None
    if failure is not None:
        print(log.text, file=sys.stderr)
        raise failure


def run(main: Callable[[list[str]], int | None]) -> None:
    """Runs an absl `main(argv)`; user errors become one line and exit code 2.

    TensorFlow is not imported here: `main` checks its flags first (a bad one stops in under a
    second, not after TensorFlow's 6 s start) and calls `import_tensorflow_quietly()` before
    its work needs it.
    """

    def guarded(argv: list[str]) -> int | None:
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}: every option is a --flag")
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # checkpoint savers log every save at INFO
        try:
            code = main(argv)
        except TfnasError as err:
            fail(str(err))
        if not code:
            exit_without_teardown()
        return code

    app.run(guarded, flags_parser=_parse_flags)


def exit_without_teardown() -> NoReturn:
    """Ends a finished command with exit code 0, skipping the interpreter's teardown.

    Python's finalisation of a process that loaded TensorFlow and built networks (module
    teardown, every object's destructor, TensorFlow's static state) took 1.9 s here after the
    quickstart's work was done: 3% of it, for nothing a user keeps. What a clean exit does
    that matters still runs: the atexit handlers (logging's flush, temporary directories'
    cleanup, absl's), then stdout and stderr are flushed. Files are written whole and closed
    by the code that writes them (`tfnas.run.files`; the search's summary writer flushes every
    epoch, Keras' TensorBoard callback closes its own), so nothing is left in a buffer. Entry
    points only: `run` calls it after `main` returned 0 or None."""
    import atexit
    import os

    atexit._run_exitfuncs()  # (CPython's own: what a normal exit runs first)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it
            pass
    os._exit(0)


def define_measurement_flags(runs: int = 40, min_seconds: float = 1.0,
                             repeats: int = 3) -> None:
    """The flags of every entry point that times models on a device (`tfnas.latency.meter`)."""
    from tfnas.latency.devices import STATISTICS

    flags.DEFINE_string("device", "local", "Where to measure: local (this host, LiteRT), "
                        "adb:SERIAL (Android, benchmark_model) or cmd:TEMPLATE; several "
                        "devices of one model, comma-separated or @FILE (one per line), share "
                        "the work (tfnas/latency/pool.py).")
    flags.DEFINE_enum("delegate", None, ["gpu", "nnapi"], "adb devices: GPU or NNAPI delegate.")
    flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
    flags.DEFINE_integer("runs", runs, "Timed runs per model, at least.", lower_bound=1)
    flags.DEFINE_integer("warmup", 5, "Untimed runs before timing.", lower_bound=0)
    flags.DEFINE_float("min_seconds", min_seconds, "Each group of models is timed for at least "
                       "this long.", lower_bound=0)
    flags.DEFINE_integer("repeats", repeats, "Times each group is timed (on freshly loaded "
                         "models); each model keeps its median.", lower_bound=1)
    flags.DEFINE_enum("statistic", "p10", list(STATISTICS), "Latency statistic of the samples.")
    flags.DEFINE_bool("reference", True, "Correct host drift: time models next to a reference "
                      "network (see tfnas/latency/meter.py).")


def meter_from_flags(values: flags.FlagValues, space: Any) -> "Meter":
    """The device and Meter the measurement flags describe (the device is checked)."""
    from tfnas.latency.meter import Meter, default_reference
    from tfnas.latency.pool import parse_devices

    device = parse_devices(values.device, threads=values.threads, delegate=values.delegate)
    device.check()
    return Meter(device, runs=values.runs, warmup=values.warmup,
                 min_seconds=values.min_seconds, repeats=values.repeats,
                 statistic=values.statistic,
                 reference=default_reference(space) if values.reference else None)


SQUEEZE_EXCITE = {"none": (False,), "all": (True,), "search": (False, True)}


class Definer:
    """absl's DEFINE_* functions bound to one FlagValues (the process's FLAGS by default; a
    fresh one lets tests parse many command lines in one process) and to the module that
    defines the flags (`--help` groups flags and run directories pick settings by it)."""

    def __init__(self, values: flags.FlagValues | None, module: str) -> None:
        self.values = values if values is not None else flags.FLAGS
        self.module = module

    def __getattr__(self, name: str) -> Callable[..., Any]:
        define = getattr(flags, name)
        return lambda *args, **kwargs: define(*args, flag_values=self.values,
                                              module_name=self.module, **kwargs)


def define_space_flags(default: str = "tiny", values: flags.FlagValues | None = None) -> None:
    """--space and the overrides of its input size, channels, width, classes and SE."""
    from tfnas.space import PRESET_NAMES

    flags = Definer(values, __name__)

    flags.DEFINE_string("space", default, f"Search space preset: {', '.join(PRESET_NAMES)}.")
    flags.DEFINE_integer("input_size", None, "Override the space's input size.")
    flags.DEFINE_integer("input_channels", None, "Override the space's input channels (1: "
                         "grayscale, 3: RGB).")
    flags.DEFINE_float("width_multiplier", None, "Override the space's width multiplier.")
    flags.DEFINE_integer("num_classes", None, "Override the space's number of classes.")
    flags.DEFINE_enum("squeeze_excite", None, list(SQUEEZE_EXCITE),
                      "Squeeze-and-excitation in the space's MBConvs: none, all, or search "
                      "(each layer chooses; multi-path methods only).")


def define_cell_flags(values: flags.FlagValues | None = None, prefix: str = "",
                      what: str = "Cell networks", module: str = __name__) -> None:
    """The overrides of a network of DARTS cells (`--space=darts_search`, ...): --cells and
    --init_channels, or with `prefix` those of another network (`eval_`: the evaluation
    network of a cell search), defined for `module`."""
    flags = Definer(values, module)
    flags.DEFINE_integer(f"{prefix}cells", None, f"{what}: override the number of cells.")
    flags.DEFINE_integer(f"{prefix}init_channels", None, f"{what}: override the first cells' "
                         "channels C.")


def define_cell_sampling_flags(values: flags.FlagValues | None = None,
                                module: str = __name__) -> None:
    """How a tool draws random networks of DARTS cells: --nodes per cell, --cell_sampling."""
    from tfnas.space.cells import CELL_SAMPLING

    flags = Definer(values, module)
    flags.DEFINE_integer("nodes", 4, "Cell networks: intermediate nodes of the sampled cells.",
                         lower_bound=1)
    flags.DEFINE_enum("cell_sampling", "uniform", list(CELL_SAMPLING), "Cell networks: how "
                      "the sampled cells' ops are drawn: uniform (every op but none equally "
                      "likely) or mixed (each cell draws its share of pools and skips "
                      "uniformly in [0, 1], so the networks span the whole latency range, "
                      "as searches with a latency target return them).")


def cell_network_from_flags(values: flags.FlagValues, name: str | None = None,
                            **overrides: Any) -> Any:
    """The cell network `name` (default --space) with the flags' overrides (input size,
    channels, classes; --cells and --init_channels unless `overrides` names them, None for
    the preset's) and `overrides`; the layer spaces' own overrides are one error."""
    from tfnas.errors import TfnasError
    from tfnas.space.cells import get_network

    for flag in ("width_multiplier", "squeeze_excite"):
        if values[flag].value is not None:
            raise TfnasError(f"--{flag} applies to layer spaces, not to cell networks")
    given = {flag: values[flag].value for flag in ("input_size", "input_channels",
                                                  "num_classes", "cells", "init_channels")
             if flag in values and values[flag].value is not None and flag not in overrides}
    given.update({k: v for k, v in overrides.items() if v is not None})
    return get_network(name or values.space, **given)


def search_space_from_flags(values: flags.FlagValues) -> Any:
    """--space as a layer space or, for a cell network's name, a `CellNetwork`."""
    from tfnas.space.cells import NETWORKS

    if values.space in NETWORKS:
        return cell_network_from_flags(values)
    return space_from_flags(values)


def space_from_flags(values: flags.FlagValues) -> "SearchSpace":
    from tfnas.space import get_space

    return get_space(values.space, input_size=values.input_size,
                     input_channels=values.input_channels,
                     width_multiplier=values.width_multiplier, num_classes=values.num_classes,
                     squeeze_excite=SQUEEZE_EXCITE.get(values.squeeze_excite))


def flag_settings(values: flags.FlagValues, modules: Sequence[str] | None = None,
                  skip: Sequence[str] = ()) -> dict[str, Any]:
    """The command's own flags (absl's left out) by name: what a run directory records
    (`tfnas.run.rundir`). `modules`: only the flags those modules define; `skip`: flags that do
    not change a run's result (where it is written, how often it checkpoints)."""
    out = {}
    for module, defined in values.flags_by_module_dict().items():
        if module.startswith("absl") or (modules is not None and module not in modules):
            continue
        for flag in defined:
            if flag.name not in skip:
                out[flag.name] = flag.value
    return dict(sorted(out.items()))


def input_fingerprints(inputs: dict[str, str | None], model_dir: str) -> dict[str, Any]:
    """Fingerprints of the input files the flags name (`tfnas.run.files.fingerprint`), by flag;
    files inside `model_dir` are the run's own outputs and left out, as are names that are no
    file (a built-in table, a TFDS data set)."""
    from pathlib import Path

    from tfnas.run.files import fingerprint

    own = Path(model_dir).resolve()
    out = {}
    for name, value in inputs.items():
        if not value:
            continue
        path = Path(value.split(":", 1)[1] if value.startswith(("npz:", "folder:",
                                                                 "predictor:")) else value)
        if not path.exists() or own in path.resolve().parents:
            continue
        out[name] = fingerprint(path)
    return out
