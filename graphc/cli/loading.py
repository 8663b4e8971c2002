"""What `graphc render FILE` draws: FILE.py's `build()` result, the graph saved in FILE.json, or
the graph of the ONNX model in FILE.onnx (imported with gc.onnx.load).

The convention (every example in examples/ follows it): a Python file defines `build()`, taking
no arguments and returning what to draw: a `Graph`, a training graph (`nn.training_graph`), a
compiled step (`gc.compile`) or an `nn.Model`. The file is imported as a module (its
`if __name__ == "__main__":` block does not run), with its own folder first on `sys.path`.
"""

import importlib.util
import sys
import traceback
from pathlib import Path

from graphc.cli.common import CommandError, one_line
from graphc.errors import GraphcError

ACCEPTED = "a Graph, a training graph (nn.training_graph), a compiled step (gc.compile) or an nn.Model"


def load(path) -> object:
    """The object FILE stands for; CommandError (one line: the problem and the fix) otherwise."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"no such file {str(path)!r}; give a .py file that defines build() or a saved .json graph")
    if path.is_dir():
        raise CommandError(f"{str(path)!r} is a folder; give a .py file that defines build() or a saved .json graph")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _saved_graph(path)
    if suffix == ".py":
        return _built(path)
    if suffix == ".onnx":
        return _onnx_graph(path)
    raise CommandError(
        f"cannot draw {str(path)!r}: give a .py file that defines build(), a .json graph file (saved with g.save) "
        "or an .onnx model"
    )


def _saved_graph(path: Path):
    from graphc.io import load_graph

    try:
        return load_graph(path)
    except GraphcError as exc:
        raise CommandError(f"cannot read the graph file: {one_line(exc)}") from None


def _onnx_graph(path: Path):
    from graphc.onnx import load as load_onnx

    try:
        return load_onnx(path)
    except GraphcError as exc:
        raise CommandError(f"cannot import the ONNX model: {one_line(exc)}") from None


def _built(path: Path):
    module = _imported(path)
    build = getattr(module, "build", None)
    if build is None:
        raise CommandError(f"{path} defines no build(); add `def build():` returning {ACCEPTED} (see docs/drawings.md)")
    if not callable(build):
        raise CommandError(
            f"build in {path} is a {type(build).__name__}, not a function; make it `def build():` returning {ACCEPTED}"
        )
    try:
        obj = build()
    except Exception as exc:  # the user's code: any exception, told in one line with the line it came from
        raise CommandError(
            f"build() in {path} raised {_what_happened(exc, path)}; fix it so that it returns {ACCEPTED}"
        ) from None
    if not _drawable(obj):
        raise CommandError(f"build() in {path} returned {type(obj).__name__}; make it return {ACCEPTED}")
    return obj


def _imported(path: Path):
    name = "graphc_build_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # as `python FILE.py` would: the file's neighbours import
    sys.modules[name] = module  # what dataclasses and pickling look classes up in
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise CommandError(f"{path}:{exc.lineno}: syntax error ({exc.msg}); fix the file") from None
    except Exception as exc:
        del sys.modules[name]
        raise CommandError(f"importing {path} raised {_what_happened(exc, path)}; fix the file") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _what_happened(exc: BaseException, path: Path) -> str:
    """`ValueError: message (at FILE:LINE)`, the line being the last one of `path` in the traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    where = f" (at {path}:{line})" if line is not None else ""
    text = one_line(exc)
    return f"{type(exc).__name__}" + (f": {text}" if text else "") + where


def _drawable(obj) -> bool:
    from graphc.backends.base import Executable
    from graphc.ir.graph import Graph
    from graphc.nn.model import Model
    from graphc.nn.training import TrainingGraph

    return isinstance(obj, Graph | TrainingGraph | Executable | Model)
