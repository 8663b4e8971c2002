"""What the `graphc` commands share: the one-line error they end with and how it is printed, and
how they print a size in bytes."""

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


def byte_size(n: int) -> str:
    """`n` bytes for people: `512 bytes`, `1.5 kB`, `2.0 MB`, ... (powers of 1000, up to GB)."""
    if n < 1000:
        return f"{n} bytes"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
