"""Conversion of a graph to a networkx.DiGraph (node ids as keys, attributes as data).

A node with several outputs has shape and dtype None and its per-output `types`; a sub-graph
attribute becomes a nested DiGraph (body_to_networkx) in the node's `attrs`, whose graph data
lists its `inputs`, `captured` and `outputs` by node id.
"""

import networkx as nx


def _node_data(n) -> dict:
    return dict(
        op=n.op,
        shape=None if n.is_tuple else n.shape,
        dtype=None if n.is_tuple else n.dtype,
        types=n.types,
        role=n.role,
        phase=n.phase.value,
        grad_of=n.grad_of,
        name=n.name,
        scope=n.scope,
        location=n.location,
        backward=n.is_backward,
        attrs={k: _attr(v) for k, v in n.attrs.items() if k != "value"},
    )


def _attr(v):
    if hasattr(v, "content_key"):  # a SubGraph
        return body_to_networkx(v)
    if isinstance(v, tuple) and any(hasattr(x, "content_key") for x in v):
        return tuple(_attr(x) for x in v)
    return v


def _build(name, nodes) -> nx.DiGraph:
    g = nx.DiGraph(name=name)
    for n in nodes:
        g.add_node(n.id, **_node_data(n))
    for n in nodes:
        for pos, x in enumerate(n.inputs):
            if g.has_edge(x.id, n.id):
                g.edges[x.id, n.id]["positions"].append(pos)
            elif x.is_tuple:
                g.add_edge(x.id, n.id, positions=[pos], shape=None, dtype=None, types=x.types)
            else:
                g.add_edge(x.id, n.id, positions=[pos], shape=x.shape, dtype=x.dtype)
    return g


def to_networkx(graph, roots=None) -> nx.DiGraph:
    """A DiGraph with an edge per (input -> consumer) use; node data: op, shape, dtype, types,
    role, phase, grad_of (the label a backward node differentiates), name, scope, location, attrs."""
    nodes = graph.live_nodes(roots) if (roots or graph.roots()) else list(graph.nodes)
    return _build(graph.name, nodes)


def body_to_networkx(sub) -> nx.DiGraph:
    """A SubGraph as a DiGraph: its nodes (as to_networkx makes them) and, in the graph data,
    `inputs`, `captured` and `outputs`: node ids in order."""
    g = _build(sub.graph.name, sub.nodes)
    g.graph.update(
        inputs=[n.id for n in sub.inputs], captured=[n.id for n in sub.captured], outputs=[n.id for n in sub.outputs]
    )
    return g
