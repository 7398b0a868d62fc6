"""The one exception type that entry points print as a single line (DESIGN.md rule 7)."""


class TfnasError(ValueError):
    """Bad input a user can fix: the message says what to change.

    Library code raises it for unknown presets or ops, malformed or mismatched architecture
    JSON, model files that do not exist or do not load. Entry points (`tfnas.cli.run`) print
    `error: <message>` on one line and exit with code 2.
    """
