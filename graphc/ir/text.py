"""The text form of a graph: reads like a program, shapes inline, stable for tests.

graph mlp(x: f32[batch,784]) params(dense/w: f32[784,256]) {
  %0: f32[batch,256] = matmul(x, dense/w)                 # dense
  %1: f32[batch,256] = relu(%0)
  %5: f32[batch,256] = where(%4, %3, 0.0)                 # bwd of %1
  return h=%1
}
"""

import numpy as np

from graphc.ir import dtypes


def _scalar_text(node) -> str | None:
    v = node.attrs["value"]
    if v.ndim != 0:
        return None
    x = v.item()
    return repr(float(x)) if dtypes.is_float(node.dtype) else repr(x)


def attr_text(v) -> str:
    """An attribute value as the text form writes it (arrays by shape, 1-tuples with a comma)."""
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}"
    if isinstance(v, tuple):
        return "(" + ", ".join(attr_text(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def graph_text(graph, roots=None, backward: bool | None = None) -> str:
    """Text of the nodes the roots (default: outputs and updates, else all) depend on.

    backward=True keeps only backward nodes (and what they read), False only forward ones.
    """
    if roots is None and not graph.roots():
        nodes = list(graph.nodes)
    else:
        nodes = graph.live_nodes(roots)
    names: dict[int, str] = {}
    lines = []
    k = 0
    for n in nodes:
        if n.op in ("input", "param"):
            names[n.id] = n.name
        elif n.op == "const" and _scalar_text(n) is not None:
            names[n.id] = _scalar_text(n)
        else:
            names[n.id] = f"%{k}"
            k += 1
    ins = ", ".join(f"{n.name}: {n.type_str}" for n in nodes if n.op == "input")
    params = ", ".join(f"{n.name}: {n.type_str}" for n in nodes if n.op == "param")
    head = f"graph {graph.name}({ins})" + (f" params({params})" if params else "") + " {"
    lines.append(head)
    for n in nodes:
        if n.op in ("input", "param") or (n.op == "const" and _scalar_text(n) is not None):
            continue
        if backward is not None and n.is_backward != backward:
            continue
        args = [names[x.id] for x in n.inputs]
        args += [f"{k}={attr_text(v)}" for k, v in n.attrs.items() if n.op != "const"]
        rhs = f"const {n.type_str}" if n.op == "const" else f"{n.op}({', '.join(args)})"
        line = f"  {names[n.id]}: {n.type_str} = {rhs}"
        notes = []
        if n.is_backward:
            notes.append(f"bwd of {names.get(n.forward_of.id, n.forward_of.label)}")
        if n.scope:
            notes.append(n.scope)
        if notes:
            line = f"{line:<64} # {'; '.join(notes)}"
        lines.append(line)
    rets = [f"{k}={names[v.id]}" for k, v in graph.outputs.items() if v.id in names]
    ups = [f"{k} <- {names[v.id]}" for k, v in graph.updates.items() if v.id in names]
    if rets:
        lines.append("  return " + ", ".join(rets))
    if ups:
        lines.append("  update " + ", ".join(ups))
    lines.append("}")
    return "\n".join(lines)
