"""graphc: a symbolic computation-graph compiler for deep learning.

import graphc as gc
with gc.Graph("f") as g:
    x = g.input("x", ("batch", 3))
    w = g.param("w", (3, 1))
    loss = gc.mean(gc.tanh(x @ w))
gw = gc.grad(loss, w)
print(g.text([loss, gw]))
out = gc.run(g, {"x": data}, outputs=[loss, gw])
"""

from graphc.autodiff import grad, gradients
from graphc.backends import compile, run
from graphc.errors import (
    AttributeValueError,
    DistributedError,
    DTypeError,
    FileWriteError,
    GradientError,
    GraphcError,
    GraphFileError,
    GraphStructureError,
    IndexRangeError,
    InputError,
    OptionError,
    ShapeError,
    SymbolicValueError,
    TrainingError,
    UnsupportedModelError,
    UnsupportedOpError,
)
from graphc.ir import Graph, Node
from graphc.ir.graph import use_file_format
from graphc.ops.api import *  # noqa: F403
from graphc.ops.registry import constant
from graphc.viz import dot_source  # noqa: F401  (importing graphc.viz registers the notebook display)

__version__ = "0.1.0"

__all__ = [
    "Graph",
    "Node",
    "grad",
    "gradients",
    "compile",
    "run",
    "constant",
    "render",
    "load_graph",
    "GraphcError",
    "ShapeError",
    "DTypeError",
    "AttributeValueError",
    "InputError",
    "IndexRangeError",
    "GradientError",
    "GraphFileError",
    "GraphStructureError",
    "SymbolicValueError",
    "OptionError",
    "TrainingError",
    "FileWriteError",
    "DistributedError",
    "UnsupportedModelError",
    "UnsupportedOpError",
]


class _GraphFilesOnFirstUse:
    """Graph.save/Graph.load until graphc.io is imported (it then registers itself): the file
    code (JSON checks, atomic writes) loads on first use, so `import graphc` stays fast."""

    @staticmethod
    def save_graph(graph, path):
        from graphc.io import save_graph

        return save_graph(graph, path)

    @staticmethod
    def load_graph(path):
        from graphc.io import load_graph

        return load_graph(path)


use_file_format(_GraphFilesOnFirstUse)


def load_graph(path) -> Graph:
    """Rebuild a graph saved by Graph.save (graphc.io.load_graph)."""
    return _GraphFilesOnFirstUse.load_graph(path)


def render(graph, path, *args, **kw):
    """Draw a graph with Graphviz; see graphc.viz.render.render (the same arguments)."""
    from graphc.viz.render import render as _render

    return _render(graph, path, *args, **kw)


_LAZY = {
    "nn": ("graphc.nn", None),
    "optim": ("graphc.nn.optim", None),
    "datasets": ("graphc.datasets", None),
    "onnx": ("graphc.onnx", None),
    "distributed": ("graphc.distributed", None),
    "training_graph": ("graphc.nn.training", "training_graph"),
    "optimize": ("graphc.passes", "optimize"),
}


def __getattr__(name):
    # The nn library, datasets and passes load on first use, so `import graphc` stays fast.
    if name not in _LAZY:
        raise AttributeError(f"module 'graphc' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return getattr(value, attr) if attr else value
