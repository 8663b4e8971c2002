"""Using sub-graphs from op code: `inline(body, args)` copies a body's nodes into the graph being built
(`reapply`, without its type check, re-applies them to inputs of other shapes).

An op that carries a body (graphc.ir.subgraph.SubGraph) often needs the body's computation as
ordinary nodes: to differentiate one step of it (autodiff runs on nodes), to unroll it, or to
build a new body from an old one. `inline` re-applies every node of the body to the given
input nodes, in the graph being built (the body being traced, if any, which then captures
what it needs), so shapes are re-inferred and phases and scopes are the caller's.
"""

from graphc.errors import GraphStructureError
from graphc.ir.node import Node
from graphc.ops.registry import apply, constant, error


def inline(body, args) -> list[Node]:
    """The body's outputs computed from `args` (one node per input of `body.all_inputs`, the
    captured ones last), as new nodes of the graph being built."""
    inputs = body.all_inputs
    args = list(args)
    if len(args) != len(inputs):
        error(GraphStructureError, "inline", f"body {body.graph.name!r} takes {len(inputs)} inputs, got {len(args)}")
    for i, (node, arg) in enumerate(zip(inputs, args)):
        if not isinstance(arg, Node) or arg.is_tuple or arg.types != node.types:
            got = arg.type_str if isinstance(arg, Node) else type(arg).__name__
            error(
                GraphStructureError,
                "inline",
                f"input {i} ({node.name}) of body {body.graph.name!r} is {node.type_str}, got {got}",
            )
    return reapply(body, args)


def reapply(body, args) -> list[Node]:
    """The body's outputs with every node re-applied to `args` (one node per input of
    `body.all_inputs`), types re-inferred: the inputs may be of other shapes than the body's
    (scan_rows rebuilds a body over fewer rows so); an op that does not take them raises."""
    new = {n.id: a for n, a in zip(body.all_inputs, args)}
    graph = args[0].graph if args else None
    for n in body.nodes:
        if n.id in new:
            continue
        if n.is_const:
            new[n.id] = constant(n.attrs["value"], n.dtype, graph=graph)
        else:
            new[n.id] = apply(n.op, [new[x.id] for x in n.inputs], n.attrs)
    return [new[n.id] for n in body.outputs]
