"""Graph.to_networkx: one node per live IR node, one edge per (input, consumer) pair."""

import networkx as nx

import graphc as gc


def build():
    with gc.Graph("nx") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 3))
        h = x @ w
        sq = h * h  # the same input twice: one edge, two positions
        loss = gc.mean(sq)
        g.output("loss", loss)
    gw = gc.grad(loss, w)
    g.output("gw", gw)
    return g, x, w, h, sq, loss, gw


def test_nodes_and_attributes():
    g, x, w, h, sq, loss, gw = build()
    d = g.to_networkx()
    assert isinstance(d, nx.DiGraph) and d.graph["name"] == "nx"
    assert set(d.nodes) == {n.id for n in g.live_nodes()}
    assert d.nodes[x.id]["role"] == "input" and d.nodes[x.id]["shape"] == ("batch", 3)
    assert d.nodes[w.id]["role"] == "param" and d.nodes[w.id]["attrs"]["trainable"] is True
    assert d.nodes[h.id]["op"] == "matmul" and d.nodes[h.id]["dtype"] == "float32"
    assert d.nodes[loss.id]["attrs"] == {"axes": (0, 1), "keepdims": False}
    assert d.nodes[h.id]["backward"] is False and d.nodes[h.id]["grad_of"] is None
    assert d.nodes[h.id]["phase"] == "forward" and d.nodes[h.id]["types"] == ((("batch", 3), "float32"),)
    assert d.nodes[gw.id]["backward"] is True and d.nodes[gw.id]["role"] == "backward"
    assert d.nodes[gw.id]["phase"] == "backward"
    assert d.nodes[gw.id]["grad_of"] == h.label  # w's gradient comes from the matmul rule
    assert "test_networkx.py:" in d.nodes[h.id]["location"]


def test_edges_carry_positions_and_types():
    g, x, w, h, sq, loss, gw = build()
    d = g.to_networkx()
    assert d.edges[x.id, h.id] == {"positions": [0], "shape": ("batch", 3), "dtype": "float32"}
    assert d.edges[w.id, h.id]["positions"] == [1]
    assert d.edges[h.id, sq.id]["positions"] == [0, 1]
    n_uses = sum(len(n.inputs) for n in g.live_nodes())
    assert sum(len(e["positions"]) for *_, e in d.edges(data=True)) == n_uses
    assert nx.is_directed_acyclic_graph(d)
    order = list(nx.topological_sort(d))
    assert order.index(x.id) < order.index(h.id) < order.index(loss.id) < order.index(gw.id)


def test_roots_restrict_the_graph():
    g, x, w, h, sq, loss, gw = build()
    d = g.to_networkx([loss])
    assert gw.id not in d and set(d.nodes) == {n.id for n in g.live_nodes([loss])}
    assert not any(data["backward"] for _, data in d.nodes(data=True))
