"""What the `graphc` commands share: the one-line error they end with and how it is printed."""

import sys

from graphc.errors import GraphcError


class CommandError(GraphcError):
    """Bad input to a command (a file, an option's value): its message names the problem and the
    fix, and the command prints it on one line and exits with status 1, without a traceback."""


def one_line(text) -> str:
    """`text` with its line breaks (and runs of blanks around them) turned into single spaces."""
    return " ".join(str(text).split())


def report(command: str, exc: BaseException) -> int:
    """Print `graphc COMMAND: error: MESSAGE` to stderr; the exit status 1."""
    print(f"graphc {command}: error: {one_line(exc)}", file=sys.stderr)
    return 1
