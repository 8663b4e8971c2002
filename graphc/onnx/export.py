"""Export: a graph's forward computation (or an nn.Model's evaluation graph) as an ONNX model.

    gc.onnx.save(model, "digits.onnx")               # inputs: x; outputs: output (logits), predictions
    gc.onnx.save(graph, "f.onnx", outputs=["y"])     # the named outputs of a graph (default: all)

The file declares one opset, OPSET (17), and IR_VERSION (8); parameters are initializers (their
current values), constants Constant nodes, inputs and outputs carry their shapes (symbolic dims as
dim_param). Each op's ONNX form is declared beside the op's other lowerings (export_rules*.py,
registered with `graphc.ops.registry.lowering(op, "onnx")`); this module never names an op. A graph
with ops that have no ONNX form (gradient ops, random ops) is refused with one error listing every
such node; nothing is written then.
"""

from pathlib import Path

import onnx
from onnx import checker, helper

from graphc.errors import GraphcError, GraphStructureError, UnsupportedOpError, where
from graphc.ir.graph import Graph
from graphc.onnx import export_rules, export_rules_nn  # noqa: F401  (registers the ops' export rules)
from graphc.onnx.export_emitter import IR_VERSION, OPSET, Emitter, Names, value_info, value_infos

__all__ = ["save", "to_onnx", "OPSET", "IR_VERSION"]

MAX_BYTES = 2**31 - 2**24  # protobuf's 2 GB limit on one message, less room for the graph itself
MODEL_OUTPUTS = {"output": "eval/output", "predictions": "eval/predictions"}  # an nn.Model's export


def save(graph_or_model, path, outputs=None, name: str | None = None) -> Path:
    """Write `graph_or_model` as an ONNX file at `path` (atomically: a file that was there stays
    intact if the export fails); returns the path. See to_onnx for `outputs` and `name`."""
    from graphc.io import atomic

    model = to_onnx(graph_or_model, outputs, name)
    path = Path(path)
    if path.is_dir():
        raise atomic.write_error(
            "an ONNX model", path, IsADirectoryError(21, "it is a folder (give a file name, e.g. model.onnx)")
        )
    data = model.SerializeToString()
    try:
        with atomic.exclusive(path):
            atomic.make_folder(path.parent)
            atomic.atomic_write(path, data)
    except OSError as exc:
        raise atomic.write_error("an ONNX model", path, exc) from None
    return path


def to_onnx(graph_or_model, outputs=None, name: str | None = None) -> onnx.ModelProto:
    """The ONNX model of a graph's outputs, checked by onnx.checker (full check).

    `graph_or_model`: a Graph, or an nn.Model (its evaluation graph: the outputs `output`, the
    network's output, and `predictions`, the probabilities; its input `x`). `outputs`: the names
    of the graph's outputs to export (default: every one), or a {onnx name: graph output name} dict.
    `name`: the ONNX graph's name (default: the graph's).
    """
    graph, named = _graph_and_outputs(graph_or_model, outputs)
    names = Names()
    live = graph.live_nodes(list(named.values()))
    inputs = [n for n in live if n.is_input]
    params = [n for n in live if n.is_param]
    for n in inputs + params:
        names.taken.add(n.name)
    for out in named:
        if out in names.taken:
            raise GraphStructureError(
                f"ONNX export of {graph.name!r}: output {out!r} has the name of an input or parameter"
            )
        names.taken.add(out)
    size = sum(graph.values[n.name].nbytes for n in params if n.name in graph.values)
    if size > MAX_BYTES:
        raise GraphcError(
            f"ONNX export of {graph.name!r}: its parameters take {size / 1e9:.2f} GB, more than one ONNX file holds "
            f"({MAX_BYTES / 1e9:.2f} GB); larger models keep their weights in external data files, which graphc's "
            "export does not write"
        )
    dims = {}
    for n in inputs:
        for axis, d in enumerate(n.shape):
            if isinstance(d, str):
                dims.setdefault(d, (n.name, axis))
    e = Emitter(names, [], dims)
    for n in inputs:
        e.bind(n, n.name)
    for n in params:
        if n.name not in graph.values:
            raise GraphcError(f"ONNX export of {graph.name!r}: parameter {n.name!r} has no value" + where(n.location))
        e.bind(n, e.initializer(n.name, graph.values[n.name]))
    e.emit(live)
    if e.problems:
        ops = sorted({p.node.op for p in e.problems})
        lines = "\n  ".join(str(p) for p in e.problems)
        raise UnsupportedOpError(
            f"cannot export graph {graph.name!r} to ONNX: {len(e.problems)} node(s) have no ONNX form "
            f"(ops {', '.join(ops)}):\n  {lines}",
            [(p.node, p.reason) for p in e.problems],
        )
    out_names = e.finish_outputs([(out, e.name_of(node)) for out, node in named.items()])
    g = helper.make_graph(
        e.nodes,
        name or graph.name,
        [value_info(n.name, n.shape, n.dtype) for n in inputs],
        [value_info(o, node.shape, node.dtype) for o, node in zip(out_names, named.values())],
        initializer=e.initializers,
        value_info=value_infos(e, out_names),
    )
    from graphc import __version__

    model = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="graphc",
        producer_version=__version__,
    )
    try:
        checker.check_model(model, full_check=True)
    except Exception as exc:  # onnx's checker and shape inference raise several types
        raise GraphcError(
            f"ONNX export of {graph.name!r} made a model that onnx.checker refuses (a graphc bug): {exc}"
        ) from exc
    return model


def _graph_and_outputs(obj, outputs):
    """(graph, {onnx output name: node}) for a Graph or an nn.Model and the outputs asked for."""
    if isinstance(obj, Graph):
        graph = obj
        if outputs is None:
            outputs = {k: k for k in graph.outputs}
    elif isinstance(getattr(obj, "graph", None), Graph) and all(v in obj.graph.outputs for v in MODEL_OUTPUTS.values()):
        graph = obj.graph  # an nn.Model: its evaluation outputs, with the trained values
        if outputs is None:
            outputs = dict(MODEL_OUTPUTS)
    else:
        raise GraphcError(f"ONNX export needs a graphc Graph or an nn.Model, got {type(obj).__name__}")
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, dict):
        outputs = {k: k for k in outputs}
    if not outputs:
        raise GraphStructureError(
            f"ONNX export of {graph.name!r}: the graph has no outputs (name some with graph.output)"
        )
    missing = [v for v in outputs.values() if v not in graph.outputs]
    if missing:
        have = ", ".join(graph.outputs) or "none"
        raise GraphStructureError(
            f"ONNX export of {graph.name!r}: no output named {', '.join(map(repr, missing))} (outputs: {have})"
        )
    return graph, {k: graph.outputs[v] for k, v in outputs.items()}
