"""Conversion of a graph to a networkx.DiGraph (node ids as keys, attributes as data)."""

import networkx as nx


def to_networkx(graph, roots=None) -> nx.DiGraph:
    """A DiGraph with an edge per (input -> consumer) use; node data: op, shape, dtype, role..."""
    g = nx.DiGraph(name=graph.name)
    nodes = graph.live_nodes(roots) if (roots or graph.roots()) else list(graph.nodes)
    for n in nodes:
        g.add_node(
            n.id, op=n.op, shape=n.shape, dtype=n.dtype, role=n.role, name=n.name, scope=n.scope,
            location=n.location, backward=n.is_backward,
            forward_of=n.forward_of.id if n.forward_of is not None else None,
            attrs={k: v for k, v in n.attrs.items() if k != "value"},
        )  # fmt: skip
    for n in nodes:
        for pos, x in enumerate(n.inputs):
            if g.has_edge(x.id, n.id):
                g.edges[x.id, n.id]["positions"].append(pos)
            else:
                g.add_edge(x.id, n.id, positions=[pos], shape=x.shape, dtype=x.dtype)
    return g
