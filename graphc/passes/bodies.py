"""Graph passes inside sub-graphs: a body (graphc.ir.subgraph.SubGraph, an op attribute) is
rewritten by the same pass as the graph holding it, nested bodies first.

A body is seen by a pass as a Graph whose inputs are the body's inputs and captured inputs
(registered inputs: never replaced, always kept) and whose outputs are the body's outputs,
named `out0`, `out1`, ...; the pass's result becomes a new SubGraph of the same input and
output types, so the op carrying it keeps its type.
"""

import functools
from collections.abc import Callable

from graphc.ir.graph import Graph
from graphc.ir.node import Attrs, Node
from graphc.ir.subgraph import SubGraph
from graphc.passes.rewrite import rewrite

GraphPass = Callable[[Graph], Graph]

__all__ = ["as_graph", "as_body", "rewrite_body", "in_bodies", "rewrite_bodies", "bodies_of"]


def _out(i: int) -> str:
    return f"out{i}"


def as_graph(body: SubGraph) -> Graph:
    """A Graph view of `body` for graph passes (its nodes, inputs by name, outputs out0, out1, ...)."""
    g = Graph(body.graph.name, body.graph.seed)
    g.sealed = True  # a body: the rewriter keeps its grad_of labels, which may name outer nodes
    g.nodes = list(body.graph.nodes)
    g.inputs = {n.name: n for n in body.all_inputs}
    g.outputs = {_out(i): n for i, n in enumerate(body.outputs)}
    return g


def as_body(graph: Graph, like: SubGraph) -> SubGraph:
    """The SubGraph that `graph` (a rewritten `as_graph(like)`) stands for: `like`'s inputs and
    captured inputs by name, its outputs by position."""
    graph.sealed = True  # like a traced body: it takes no new nodes
    return SubGraph(
        graph,
        [graph.inputs[n.name] for n in like.inputs],
        [graph.outputs[_out(i)] for i in range(len(like.outputs))],
        [graph.inputs[n.name] for n in like.captured],
    )


def rewrite_body(body: SubGraph, graph_pass: GraphPass) -> SubGraph:
    """`graph_pass` applied to `body`: a new SubGraph of the same input and output types (`body`
    itself when the pass returns its graph unchanged)."""
    view = as_graph(body)
    out = graph_pass(view)
    return body if out is view else as_body(out, body)


def bodies_of(node: Node) -> dict[str, SubGraph]:
    """The attributes of `node` that are bodies, by attribute name."""
    return {k: v for k, v in node.attrs.items() if isinstance(v, SubGraph)}


def rewrite_bodies(graph: Graph, graph_pass: GraphPass) -> Graph:
    """`graph` with every body attribute of its nodes rewritten by `graph_pass` (the graph itself
    is returned as it is when it holds no body)."""
    if not any(bodies_of(n) for n in graph.nodes):
        return graph

    def rule(rw, node, inputs):
        bodies = bodies_of(node)
        if not bodies:
            return None
        attrs = Attrs({**node.attrs, **{k: rewrite_body(b, graph_pass) for k, b in bodies.items()}})
        return rw.copy(node, inputs, attrs)

    return rewrite(graph, rule)


def in_bodies(graph_pass: GraphPass) -> GraphPass:
    """`graph_pass` made to rewrite every body too (recursively: bodies in bodies), inner ones
    first, so that the outer pass sees bodies in their final form (CSE merges equal ones)."""

    @functools.wraps(graph_pass)
    def run(graph: Graph) -> Graph:
        return graph_pass(rewrite_bodies(graph, run))

    return run
