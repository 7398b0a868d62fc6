"""The one exception type that entry points print as a single line (docs/design.md, rule 7)."""


class TfnasError(ValueError):
    """Bad input a user can fix: the message says what to change.

    Library code raises it for unknown presets or ops, malformed or mismatched architecture
    JSON, model files that do not exist or do not load. Entry points (`tfnas.cli.run`) print
    `error: <message>` on one line and exit with code 2.
    """


def first_line(text: object, default: str = "no output") -> str:
    """The first non-blank line of a message or a tool's output (errors stay one line)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else default


def error_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    return first_line(err, type(err).__name__)


def missing_file(path: object, what: str, hint: str = "") -> TfnasError:
    """The error for a file that cannot be read as one: `what 'path' does not exist` or `... is
    a directory, not a file`, with an optional hint in parentheses."""
    from pathlib import Path

    problem = "is a directory, not a file" if Path(str(path)).is_dir() else "does not exist"
    return TfnasError(f"{what} {str(path)!r} {problem}" + (f" ({hint})" if hint else ""))
