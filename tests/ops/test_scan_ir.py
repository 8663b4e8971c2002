"""A scan in the IR: its text form, graph files, to_networkx, the passes, and random ops in its body."""

import numpy as np
import pytest

import graphc as gc
from graphc.ir.subgraph import SubGraph


def small_rnn():
    with gc.Graph("rnn") as g:
        xs = g.input("xs", (3, 2), "float64")
        h0 = g.input("h0", (2,), "float64")
        w = g.param("w", (2, 2), dtype="float64")
        h, hs = gc.scan(lambda h, x: (gc.tanh(h @ w + x),) * 2, h0, xs)
        g.output("h", h)
        g.output("hs", hs)
    return g


FEEDS = {"xs": np.linspace(-1, 1, 6).reshape(3, 2), "h0": np.array([0.3, -0.2])}


def test_text_form_of_a_small_scan():
    assert small_rnn().text() == "\n".join([
        "graph rnn(xs: f64[3,2], h0: f64[2]) params(w: f64[2,2]) {",
        "  %3: (f64[2], f64[3,2], f64[3,2]) = scan(h0, xs, w, body=body(c0: f64[2], x0: f64[2]) "
        "captures(w: f64[2,2]) {",
        "    %2: f64[1,2] = reshape(c0, shape=(1, 2))",
        "    %4: f64[1,2] = matmul(%2, w)",
        "    %5: f64[2] = reshape(%4, shape=(2,))",
        "    %6: f64[2] = add(%5, x0)",
        "    %7: f64[2] = tanh(%6)",
        "    return %7, %7",
        "  }, length=3, num_carry=1, num_xs=1, reverse=False, saved=True)",
        "  %4: f64[2] = tuple_get(%3, index=0)",
        "  %5: f64[3,2] = tuple_get(%3, index=1)",
        "  return h=%4, hs=%5",
        "}",
    ])  # fmt: skip


def test_text_form_of_the_gradient_shows_the_reverse_scan_as_backward():
    g = small_rnn()
    gw = gc.grad(gc.sum(g.outputs["hs"]), g.params["w"])
    lines = g.text([gw], backward=True).splitlines()
    back = [ln for ln in lines if "= scan(" in ln]
    assert len(back) == 1 and "# bwd of %3" in back[0]
    head = "%15: (f64[2], f64[2,2], f64[3,2], f64[3,2,2]) = scan(%12, %14, %10, xs, %9, w, "
    assert back[0].lstrip().startswith(head)
    assert "body=body(d0: f64[2], d1: f64[2,2], x0: f64[2], x1: f64[2], x2: f64[2]) captures(w: f64[2,2])" in back[0]
    assert "  }, length=3, num_carry=2, num_xs=3, reverse=True, saved=True)" in lines
    assert lines[-2] == "  %16: f64[2,2] = tuple_get(%15, index=1)                        # bwd of %3"


def test_graph_file_round_trip_of_a_graph_with_a_scan_and_its_gradient(tmp_path):
    g = small_rnn()
    g.output("gw", gc.grad(gc.sum(g.outputs["hs"] * g.outputs["hs"]), g.params["w"]))
    g.save(tmp_path / "rnn.json")
    h = gc.load_graph(tmp_path / "rnn.json")
    assert h.text() == g.text()
    scans = [n for n in h.nodes if n.op == "scan"]
    assert len(scans) == 2 and all(isinstance(n.attrs["body"], SubGraph) for n in scans)
    assert scans[0].attrs["body"] == [n for n in g.nodes if n.op == "scan"][0].attrs["body"]
    want, got = gc.run(g, FEEDS), gc.run(h, FEEDS)
    assert sorted(got) == ["gw", "h", "hs"]
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    np.testing.assert_allclose(gc.compile(h, "numba")(FEEDS)["gw"], want["gw"], rtol=1e-12)


def test_to_networkx_of_a_scan_nests_its_body():
    g = small_rnn()
    node = g.outputs["h"].inputs[0]
    d = g.to_networkx()
    data = d.nodes[node.id]
    assert data["op"] == "scan" and data["shape"] is None
    assert data["types"] == (((2,), "float64"), ((3, 2), "float64"), ((3, 2), "float64"))
    assert {k: v for k, v in data["attrs"].items() if k != "body"} == {
        "length": 3, "num_carry": 1, "num_xs": 1, "reverse": False, "saved": True,
    }  # fmt: skip
    inner = data["attrs"]["body"]
    body = node.attrs["body"]
    assert inner.graph["inputs"] == [n.id for n in body.inputs] and inner.graph["captured"] == [body.captured[0].id]
    # w is captured when the matmul reads it, after the reshape of c0
    ops = [inner.nodes[i]["op"] for i in inner.nodes]
    assert ops == ["input", "input", "reshape", "input", "matmul", "reshape", "add", "tanh"]
    assert {d.nodes[u]["name"] for u, _ in d.in_edges(node.id)} == {"xs", "h0", "w"}


def test_cse_merges_two_equal_scans_and_passes_keep_the_result():
    with gc.Graph("twice") as g:
        xs = g.input("xs", (3, 2), "float64")
        h0 = g.input("h0", (2,), "float64")
        a, _ = gc.scan(lambda h, x: (gc.tanh(h + x), h), h0, xs)
        b, _ = gc.scan(lambda c, y: (gc.tanh(c + y), c), h0, xs)  # equal body, other names and line
        g.output("s", a * b)
    opt = gc.optimize(g)
    assert sum(n.op == "scan" for n in opt.live_nodes()) == 1
    want = gc.run(g, FEEDS)["s"]
    np.testing.assert_array_equal(gc.run(opt, FEEDS)["s"], want)
    np.testing.assert_allclose(gc.compile(g, "numba")(FEEDS)["s"], want, rtol=1e-12)


# -- random ops in a body -------------------------------------------------------------------------------
def dropout_graph(steps=6, width=64):
    with gc.Graph("drop") as g:
        xs = g.input("xs", (steps, width), "float64")
        s, ys = gc.scan(lambda s, x: (s + 1.0, gc.dropout(x, 0.5, seed=3)), gc.constant(0.0, "float64"), xs)
        g.output("ys", ys)
        g.output("gx", gc.grad(gc.sum(ys * 2.0), xs))
    return g


def test_a_dropout_in_a_body_draws_a_different_mask_at_each_step_the_same_on_both_backends():
    g = dropout_graph()
    feeds = {"xs": np.ones((6, 64))}
    ref, fast = gc.compile(g, "reference"), gc.compile(g, "numba")
    first = ref(feeds)
    masks = first["ys"]
    assert len({m.tobytes() for m in masks}) == 6  # a different mask at each step
    assert set(np.unique(masks)) == {0.0, 2.0}
    for t in range(6):  # the step's time index follows the run counter in the seed
        keep = np.random.default_rng([3, 0, t]).random(64) >= 0.5
        np.testing.assert_array_equal(masks[t], keep * 2.0)
    np.testing.assert_array_equal(first["gx"], masks * 2.0)  # the backward recomputes the same masks
    np.testing.assert_array_equal(fast(feeds)["ys"], masks)
    second = ref(feeds)["ys"]
    assert not np.array_equal(second, masks)  # the next run draws new masks
    np.testing.assert_array_equal(fast(feeds)["ys"], second)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_a_dropout_in_a_nested_body_draws_per_outer_and_inner_step(backend):
    with gc.Graph("drop2") as g:
        xs = g.input("xs", (2, 3, 16), "float64")

        def outer(c, x):
            _, inner = gc.scan(lambda c2, row: (c2, gc.dropout(row, 0.5, seed=1)), c, x)
            return c, inner

        _, ys = gc.scan(outer, gc.constant(0.0, "float64"), xs)
    got = gc.compile(g, backend, outputs=ys)({"xs": np.ones((2, 3, 16))})
    for t in range(2):
        for u in range(3):
            keep = np.random.default_rng([1, 0, t, u]).random(16) >= 0.5
            np.testing.assert_array_equal(got[t, u], keep * 2.0)
