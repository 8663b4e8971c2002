"""ONNX files: `save` writes a graph's forward (evaluation) computation as an ONNX model,
`load` reads an ONNX model into a graphc Graph.

    gc.onnx.save(model_or_graph, "model.onnx")      # gc.onnx.to_onnx(...): the ModelProto, unwritten
    g = gc.onnx.load("model.onnx")

Both load their code (and the `onnx` package) on first use, so `import graphc` stays fast.
"""

__all__ = ["save", "to_onnx", "load"]


def save(graph_or_model, path, *args, **kw):
    """Write a graph (or an nn.Model's evaluation graph) as an ONNX file; see
    graphc.onnx.export.save (the same arguments)."""
    from graphc.onnx.export import save as _save

    return _save(graph_or_model, path, *args, **kw)


def to_onnx(graph_or_model, *args, **kw):
    """The onnx.ModelProto that save writes (checked by onnx.checker); see graphc.onnx.export.to_onnx."""
    from graphc.onnx.export import to_onnx as _to_onnx

    return _to_onnx(graph_or_model, *args, **kw)


def load(path_or_model, *args, **kw):
    """Read an ONNX file (or an onnx.ModelProto) into a graphc Graph; see
    graphc.onnx.importer.load (the same arguments)."""
    from graphc.onnx.importer import load as _load

    return _load(path_or_model, *args, **kw)
