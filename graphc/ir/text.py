"""The text form of a graph: reads like a program, shapes inline, stable for tests.

graph mlp(x: f32[batch,784]) params(dense/w: f32[784,256]) {
  %2: f32[batch,256] = matmul(x, dense/w)                 # dense
  %3: f32[batch,256] = relu(%2)
  %9: f32[batch,256] = where(%8, %7, 0.0)                 # bwd of %3
  return h=%3
}

One naming scheme: a value is `%N`, N its node id (`node.id`), so the same value has the
same name in every listing of its graph (whole, backward only, from some roots), in
`step.summary()` and in drawings, and error messages call it `op#N` (`node.label`, e.g.
`relu#3`); inputs and parameters go by their names, scalar constants are written inline
(`value_name`).

A node with several outputs shows its types in parentheses, `%2: (f32[2], f32[3]) = split(...)`;
a sub-graph attribute prints as a nested block with its own inputs, captured inputs and
results, indented under the node that carries it (its values are numbered by the body's own
node ids):

  %3: f32[4] = some_op(%1, w, body=body(x0: f32[4]) captures(w: f32[4]) {
    %2: f32[4] = mul(x0, w)
    return %2
  })
"""

import numpy as np

from graphc.ir import dtypes
from graphc.ir.phase import Phase

NOTE_COLUMN = 64  # where the `# notes` of a top-level line start


def _scalar_text(node) -> str | None:
    v = node.attrs["value"]
    if v.ndim != 0:
        return None
    x = v.item()
    return repr(float(x)) if dtypes.is_float(node.dtype) else repr(x)


def attr_text(v) -> str:
    """An attribute value as one line (arrays by shape, 1-tuples with a comma, sub-graphs by type)."""
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}"
    if isinstance(v, tuple):
        return "(" + ", ".join(attr_text(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if hasattr(v, "content_key"):  # a SubGraph
        ins = ", ".join(n.type_str for n in v.all_inputs)
        outs = ", ".join(n.type_str for n in v.outputs)
        return f"body({ins}) -> ({outs})"
    return repr(v)


def value_name(node) -> str:
    """The name of a value in the text form, step.summary() and drawings: an input's or
    parameter's own name (x, dense/w), a scalar constant's value (0.5), else `%N` with N the
    node's id."""
    if node.is_input or node.is_param:
        return node.name
    if node.is_const and (text := _scalar_text(node)) is not None:
        return text
    return f"%{node.id}"


def _names(nodes) -> dict[int, str]:
    return {n.id: value_name(n) for n in nodes}


def _attr_block(v, indent: int) -> str:
    """An attribute value for the text form: sub-graphs as nested blocks, the rest on one line."""
    if hasattr(v, "content_key"):
        return body_text(v, indent)
    if isinstance(v, tuple) and any(hasattr(x, "content_key") for x in v):
        return "(" + ", ".join(_attr_block(x, indent) for x in v) + ("," if len(v) == 1 else "") + ")"
    return attr_text(v)


def _node_lines(nodes, names, indent: int, backward: bool | None) -> list[str]:
    pad = " " * indent
    lines = []
    by_label = {n.label: names[n.id] for n in nodes}  # grad_of labels shown as the names used here
    for n in nodes:
        if n.is_input or n.is_param or (n.is_const and _scalar_text(n) is not None):
            continue
        if backward is not None and (n.phase is not Phase.FORWARD) != backward:
            continue
        args = [names[x.id] for x in n.inputs]
        args += [f"{k}={_attr_block(v, indent)}" for k, v in n.attrs.items() if not n.is_const]
        rhs = f"const {n.type_str}" if n.is_const else f"{n.op}({', '.join(args)})"
        first, *rest = f"{pad}{names[n.id]}: {n.type_str} = {rhs}".split("\n")
        notes = []
        if n.phase is Phase.BACKWARD:
            notes.append(f"bwd of {by_label.get(n.grad_of, n.grad_of)}" if n.grad_of else "bwd")
        elif n.phase is Phase.UPDATE:
            notes.append("update")
        if n.scope:
            notes.append(n.scope)
        if notes:
            first = f"{first:<{NOTE_COLUMN + indent - 2}} # {'; '.join(notes)}"
        lines += [first, *rest]
    return lines


def graph_text(graph, roots=None, backward: bool | None = None) -> str:
    """Text of the nodes the roots (default: outputs and updates, else all) depend on.

    backward=True keeps only the nodes of the backward pass and the updates (and what they
    read), False only forward ones.
    """
    if roots is None and not graph.roots():
        nodes = list(graph.nodes)
    else:
        nodes = graph.live_nodes(roots)
    names = _names(nodes)
    ins = ", ".join(f"{n.name}: {n.type_str}" for n in nodes if n.is_input)
    params = ", ".join(f"{n.name}: {n.type_str}" for n in nodes if n.is_param)
    lines = [f"graph {graph.name}({ins})" + (f" params({params})" if params else "") + " {"]
    lines += _node_lines(nodes, names, 2, backward)
    rets = [f"{k}={names[v.id]}" for k, v in graph.outputs.items() if v.id in names]
    ups = [f"{k} <- {names[v.id]}" for k, v in graph.updates.items() if v.id in names]
    if rets:
        lines.append("  return " + ", ".join(rets))
    if ups:
        lines.append("  update " + ", ".join(ups))
    lines.append("}")
    return "\n".join(lines)


def body_text(sub, indent: int = 0) -> str:
    """A SubGraph as a block: `body(inputs) captures(...) {`, its nodes indented two more
    than `indent`, `return` its outputs in order, and `}` at `indent` (the first line is not
    indented: it continues the line that holds the attribute)."""
    nodes = sub.nodes
    names = _names(nodes)
    ins = ", ".join(f"{n.name}: {n.type_str}" for n in sub.inputs)
    caps = ", ".join(f"{n.name}: {n.type_str}" for n in sub.captured)
    lines = [f"body({ins})" + (f" captures({caps})" if caps else "") + " {"]
    lines += _node_lines(nodes, names, indent + 2, None)
    lines.append(" " * (indent + 2) + "return " + ", ".join(names[n.id] for n in sub.outputs))
    lines.append(" " * indent + "}")
    return "\n".join(lines)
