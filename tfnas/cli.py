"""Shared plumbing of the absl entry points: one-line errors, exit code 2, quiet TensorFlow.

Every entry point ends with `cli.run(main)`. Bad flags (absl parse or validator errors) and
`TfnasError`s raised anywhere below `main` print `error: <message>` on one line to stderr and
exit with code 2, before any heavy work starts (DESIGN.md rule 7).
"""

from __future__ import annotations

import sys
from typing import Callable, NoReturn, Sequence

from tfnas.quiet import silence_tensorflow

silence_tensorflow()  # entry points import this module before TensorFlow

from absl import app, flags  # noqa: E402

from tfnas.errors import TfnasError, error_line  # noqa: E402


def fail(message: str) -> NoReturn:
    """Prints one line and exits with code 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _parse_flags(argv: Sequence[str]) -> list[str]:
    try:
        return flags.FLAGS(list(argv))
    except flags.Error as err:
        fail(error_line(err))


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


def run(main: Callable[[list[str]], int | None], *, tensorflow: bool = True) -> None:
    """Runs an absl `main(argv)`; user errors become one line and exit code 2.

    `tensorflow=False` for tools that only need the LiteRT runtime (faster start).
    """

    def guarded(argv: list[str]) -> int | None:
        if len(argv) > 1:
            fail(f"unexpected arguments {argv[1:]}: every option is a --flag")
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # checkpoint savers log every save at INFO
        if tensorflow:
            import_tensorflow_quietly()
        try:
            return main(argv)
        except TfnasError as err:
            fail(str(err))

    app.run(guarded, flags_parser=_parse_flags)
