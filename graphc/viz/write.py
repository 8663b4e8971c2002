"""Writing drawings: the .gv source always (atomically), the image through Graphviz's `dot`.

Without `dot` only the .gv is written, with a DotNotFoundWarning saying how to install it
(a DotNotFoundError when the caller requires dot).
"""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import graphviz

from graphc.errors import AttributeValueError, GraphcError
from graphc.io import atomic

INSTALL_HINT = (
    "the Graphviz 'dot' program is not on PATH, so only the .gv source was written. "
    "Install it with `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` (macOS) "
    "or `conda install -c conda-forge graphviz`, or render the .gv at https://dreampuf.github.io/GraphvizOnline"
)

DOT_TIMEOUT_S = 120
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


class DotNotFoundError(GraphcError, RuntimeError):
    """The `dot` program is needed for SVG/PNG output and is not installed."""


class DotNotFoundWarning(UserWarning):
    """Only the .gv file was written because `dot` is not installed."""


def target_paths(path) -> tuple[Path, Path, str | None]:
    """(gv path, image path, format or None for source only) for a render path; checks it."""
    if not isinstance(path, (str, os.PathLike)):
        raise AttributeValueError(f"render: path must be a str or a path, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise AttributeValueError(
            f"render: path {str(path)!r} is a folder; give a file name such as {str(path / 'graph.svg')!r}"
        )
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("gv", "dot"):
        return path, path, None
    fmt = suffix or "svg"
    if fmt not in graphviz.FORMATS:
        raise AttributeValueError(
            f"render: unknown output format {fmt!r} for {str(path)!r}; use .svg, .png, .pdf or .gv"
        )
    return path.with_suffix(".gv"), path.with_suffix("." + fmt), fmt


def write(source: str, gv: Path, path: Path, fmt: str | None, require_dot: bool) -> list[Path]:
    """Write `source` to `gv` and, with `dot`, the image to `path`; return the written paths."""
    target = gv
    try:
        with atomic.writing() as tag:
            atomic.make_folder(gv.parent)
            _remove_leftovers(gv.parent, {gv.name, path.name})
            atomic.atomic_write(gv, source.encode(), tag)
            if fmt is None:
                return [gv]
            dot_exe = shutil.which("dot")
            if dot_exe is None:
                message = f"render {str(path)!r}: {INSTALL_HINT} ({gv})"
                if require_dot:
                    raise DotNotFoundError(message)
                warnings.warn(message, DotNotFoundWarning, stacklevel=user_stacklevel())
                return [gv]
            target = path
            run_dot(dot_exe, fmt, gv, path, path.with_name(f".{path.name}.{tag}.tmp"))
    except OSError as exc:
        raise atomic.write_error("drawing", target, exc) from None
    return [gv, path]


def pipe(source: str, fmt: str) -> bytes | None:
    """The image of `source` in `fmt` made by `dot` in memory (None without dot)."""
    dot_exe = shutil.which("dot")
    if dot_exe is None:
        return None
    try:
        proc = subprocess.run([dot_exe, f"-T{fmt}"], input=source.encode(), capture_output=True, timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise GraphcError(f"render: dot took more than {DOT_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise GraphcError(f"render: dot failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def user_stacklevel() -> int:
    """The warnings stacklevel of the innermost caller outside the graphc package, so that a
    warning points at the user's line whether render was called as gc.render or directly."""
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame is not None:
        if not os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
            return level
        frame, level = frame.f_back, level + 1
    return 2


def run_dot(dot_exe: str, fmt: str, gv: Path, path: Path, tmp: Path) -> None:
    """dot writes the image to `tmp`, which then replaces `path` in one step."""
    try:
        try:
            proc = subprocess.run(
                [dot_exe, f"-T{fmt}", str(gv), "-o", str(tmp)], capture_output=True, text=True, timeout=DOT_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise GraphcError(f"render: dot took more than {DOT_TIMEOUT_S} s on {gv}") from None
        if proc.returncode != 0:
            raise GraphcError(f"render: dot failed on {gv}: {proc.stderr.strip()}")
        os.replace(tmp, path)
        atomic.sync_folder(path.parent)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _remove_leftovers(folder: Path, names) -> None:
    """Temporary files that killed renders of these names left (graphc.io.atomic judges which)."""
    for name in names:
        n = re.escape(name)
        atomic.remove_stale(folder, re.compile(rf"\.{n}\.(?P<tag>{atomic.TAG})\.tmp"))
        atomic.remove_stale(folder, re.compile(rf"\.{n}\.{atomic.OLD_TMP}\.tmp"))  # before writer tags
