"""`graphc info FILE`: what a model file holds: its inputs and outputs with their shapes, its ops and
how often each occurs, and its parameter count; for an ONNX file also its IR version, opset and
producer, and whether (and as what) graphc imports it.

    model.onnx: ONNX model, IR version 8, opset 17, produced by graphc 0.1.0
    inputs: x: f32[batch,64]
    outputs: output: f32[batch,10], predictions: f32[batch,10]
    ops: 10 nodes: Add 3, MatMul 3, Relu 2, Softmax 1, Identity 1
    parameters: 6 initializers, 50,890 values (203.6 kB)
    graphc import: 10 nodes (add 3, matmul 3, relu 2, softmax 1), 6 parameters

FILE may also be anything `graphc render` draws (FILE.py with build(), a graph saved as FILE.json).
"""

from collections import Counter
from pathlib import Path

from graphc.cli.common import CommandError, byte_size, one_line
from graphc.errors import GraphcError


def file_lines(file) -> list[str]:
    """The lines `graphc info FILE` prints; CommandError for a file it cannot read."""
    path = Path(file)
    if path.suffix.lower() == ".onnx" and path.is_file():
        return onnx_lines(path)
    from graphc.cli.loading import load

    return [f"{path.name}: graphc graph", *graph_lines(_graph_of(load(path)))]


def onnx_lines(path: Path) -> list[str]:
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:
        raise CommandError(f"reading ONNX files needs the onnx package ({exc}); pip install onnx") from None
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, OSError, RuntimeError, ValueError) as exc:
        raise CommandError(
            f"{str(path)!r} is not an ONNX model, or it is truncated or corrupt ({one_line(exc)})"
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise CommandError(f"{str(path)!r} is not an ONNX model (no IR version or no graph), or it is truncated")
    g = model.graph
    opsets = ", ".join(
        f"{o.domain or 'ai.onnx'} {o.version}" if o.domain not in ("", "ai.onnx") else str(o.version)
        for o in model.opset_import
    )
    producer = f", produced by {model.producer_name} {model.producer_version}".rstrip() if model.producer_name else ""
    inits = {t.name for t in g.initializer}
    inputs = [v for v in g.input if v.name not in inits]  # old files list initializers as inputs too
    ops = Counter(n.op_type for n in g.node)
    values = sum(_count(t.dims) for t in g.initializer)
    size = sum(_count(t.dims) * _itemsize(t.data_type) for t in g.initializer)
    lines = [
        f"{path.name}: ONNX model, IR version {model.ir_version}, opset {opsets or 'none'}{producer}",
        f"inputs: {', '.join(_value_text(v) for v in inputs) or 'none'}",
        f"outputs: {', '.join(_value_text(v) for v in g.output) or 'none'}",
        f"ops: {len(g.node)} nodes" + (f": {_counts(ops)}" if ops else ""),
        f"parameters: {len(g.initializer)} initializers, {values:,} values ({byte_size(size)})",
    ]
    try:
        from graphc.onnx import load

        imported = load(path)
    except GraphcError as exc:
        return [*lines, f"graphc import: not possible: {one_line(exc)}"]
    nodes = [n for n in imported.nodes if not n.is_source]
    counts = Counter(n.op for n in nodes)
    return [*lines, f"graphc import: {len(nodes)} nodes ({_counts(counts)}), {len(imported.params)} parameters"]


def graph_lines(graph) -> list[str]:
    """Inputs, outputs, ops and parameter count of a graphc graph."""
    live = graph.live_nodes()
    ops = Counter(n.op for n in live if not n.is_source)
    params = [n for n in live if n.is_param]
    values = sum(_count(n.shape) for n in params)
    trainable = sum(_count(n.shape) for n in params if n.attrs["trainable"])
    return [
        f"inputs: {', '.join(f'{k}: {v.type_str}' for k, v in graph.inputs.items()) or 'none'}",
        f"outputs: {', '.join(f'{k}: {v.type_str}' for k, v in graph.outputs.items()) or 'none'}",
        f"ops: {sum(ops.values())} nodes" + (f": {_counts(ops)}" if ops else ""),
        f"parameters: {len(params)} ({values:,} values, {trainable:,} trainable)",
    ]


def _graph_of(obj):
    """The Graph of what `graphc render` accepts (a model's, a step's, a training graph's)."""
    from graphc.ir.graph import Graph

    return obj if isinstance(obj, Graph) else obj.graph


def _value_text(v) -> str:
    if not v.type.HasField("tensor_type"):
        return f"{v.name}: (not a tensor)"
    t = v.type.tensor_type
    from onnx import helper

    try:
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name
    except (KeyError, TypeError, ValueError):
        dtype = f"type {t.elem_type}"
    from graphc.ir.dtypes import SHORT

    dtype = SHORT.get(dtype, dtype)
    if not t.HasField("shape"):
        return f"{v.name}: {dtype}[?]"
    dims = ",".join(d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in t.shape.dim)
    return f"{v.name}: {dtype}[{dims}]"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{op} {k}" for op, k in counter.most_common())


def _count(dims) -> int:
    total = 1
    for d in dims:
        total *= int(d) if not isinstance(d, str) else 1
    return total


def _itemsize(data_type: int) -> int:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 0
