"""ONNX files: `save` writes a graph's forward (evaluation) computation as an ONNX model,
`load` reads an ONNX model into a graphc Graph.

    gc.onnx.save(model_or_graph, "model.onnx")      # gc.onnx.to_onnx(...): the ModelProto, unwritten
    g = gc.onnx.load("model.onnx")

Both load their code (and the `onnx` package) on first use, so `import graphc` stays fast.
"""

import importlib

from graphc.errors import GraphcError

__all__ = ["save", "to_onnx", "load"]


def _module(name: str, function: str):
    """graphc.onnx.NAME, or an error saying that `function` needs the onnx package when it is missing."""
    try:
        return importlib.import_module(f"graphc.onnx.{name}")
    except ImportError as exc:
        if exc.name not in ("onnx", "google", "google.protobuf"):
            raise
        raise GraphcError(
            f"gc.onnx.{function} needs the onnx package, which is not installed ({exc}); "
            "install it with pip install onnx (it comes with graphc's dev extra)"
        ) from None


def save(graph_or_model, path, *args, **kw):
    """Write a graph (or an nn.Model's evaluation graph) as an ONNX file; see
    graphc.onnx.export.save (the same arguments)."""
    return _module("export", "save").save(graph_or_model, path, *args, **kw)


def to_onnx(graph_or_model, *args, **kw):
    """The onnx.ModelProto that save writes (checked by onnx.checker); see graphc.onnx.export.to_onnx."""
    return _module("export", "to_onnx").to_onnx(graph_or_model, *args, **kw)


def load(path_or_model, *args, **kw):
    """Read an ONNX file (or an onnx.ModelProto) into a graphc Graph; see
    graphc.onnx.importer.load (the same arguments)."""
    return _module("importer", "load").load(path_or_model, *args, **kw)
