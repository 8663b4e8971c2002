"""The residuals a scan's gradient reads: work the forward loop already did is read from it.

The reverse scan recomputes the forward body from the stacked carry-ins; loop_hoist moves the
recomputed products out of it in batched form, and restack (passes/restack.py, run by
loop_hoist) has the forward scan stack the value instead (JAX's "save the dots"): no matrix
product of the forward step is computed twice. The gate activations the reverse body would
recompute from that value (behind a split) are stacked by the forward scan too, where the
reverse body reads them. Checked on the structure of the optimized graph, against the
reference interpreter and against finite differences in float64.
"""

import numpy as np
from passcheck import assert_same, results

import graphc as gc
from graphc.passes import optimize, run_passes
from graphc.passes.loops import loop_accumulate
from graphc.passes.restack import restack

T, B, F, H = 5, 3, 2, 4
rng = np.random.default_rng(3)


def scans(graph):
    return [n for n in graph.live_nodes() if n.op == "scan"]


def body_ops(scan, op):
    return [n for n in scan.attrs["body"].nodes if n.op == op]


def lstm_graph(dtype="float32"):
    """An LSTM cell, its gates one product of h (`h @ w_h`) plus the input projection."""
    g = gc.Graph("lstm")
    with g:
        xs = g.input("xs", (T, B, F), dtype)
        w_x = g.param("w_x", (F, 4 * H), init="uniform", dtype=dtype)
        w_h = g.param("w_h", (H, 4 * H), init="uniform", dtype=dtype)
        b = g.param("b", (4 * H,), init="uniform", dtype=dtype)

        def cell(carry, x):
            h, c = carry
            i, f, o, u = gc.split(x @ w_x + h @ w_h + b, 4, axis=1)
            c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(u)
            h = gc.sigmoid(o) * gc.tanh(c)
            return (h, c), None

        zeros = gc.constant(np.full((B, H), 0.1), dtype)
        (h, _), _ = gc.scan(cell, (zeros, zeros), xs)
        loss = gc.mean(h * h)
        g.output("loss", loss)
        for name, d in gc.gradients(loss).items():
            g.output(f"d_{name}", d)
    return g


def gru_graph():
    """A GRU-like cell: the recurrent product plus a captured bias, split and gated."""
    g = gc.Graph("gru")
    with g:
        xs = g.input("xs", (T, B, 3 * H))
        w_h = g.param("w_h", (H, 3 * H), init="uniform")
        b_h = g.param("b_h", (3 * H,), init="uniform")

        def cell(h, x):
            xr, xz, xn = gc.split(x, 3, axis=1)
            hr, hz, hn = gc.split(h @ w_h + b_h, 3, axis=1)
            r, z = gc.sigmoid(xr + hr), gc.sigmoid(xz + hz)
            n = gc.tanh(xn + r * hn)
            return n + z * (h - n), None

        h, _ = gc.scan(cell, gc.constant(np.zeros((B, H), np.float32)), xs)
        loss = gc.mean(h * h)
        g.output("loss", loss)
        for name, d in gc.gradients(loss).items():
            g.output(f"d_{name}", d)
    return g


def feeds(shape=(T, B, F), dtype=np.float32):
    return {"xs": rng.standard_normal(shape).astype(dtype)}


def recomputed_products(graph):
    """The matmuls outside the loops that read a scan's stacked carry-ins (a recomputed h @ w)."""
    out = []
    for n in graph.live_nodes():
        if n.op == "matmul" and any(x.op == "tuple_get" and x.inputs[0].op == "scan" for x in n.inputs):
            out.append(n)
    return [n for n in out if n.inputs[1].is_param]


def test_the_forward_scan_stacks_the_gate_preactivation_and_nothing_recomputes_its_product():
    g = lstm_graph()
    g2 = optimize(g)
    fwd, back = scans(g2)
    assert fwd.attrs["reverse"] is False and back.attrs["reverse"] is True
    # the forward body stacks its gates' activations (three sigmoids, tanh(u), tanh(c)), which
    # it computes from the gate pre-activation (x-projection + h @ w_h + b) ...
    nc = fwd.attrs["num_carry"]
    ys = fwd.attrs["body"].outputs[nc:]
    assert sorted(y.op for y in ys) == ["sigmoid"] * 3 + ["tanh"] * 2
    (split,) = body_ops(fwd, "split")
    assert split.inputs[0].op == "add"
    # ... the reverse scan reads them as x-slices: it recomputes no activation and no h @ w_h
    # (its one product is dz @ w_h^T) ...
    assert len(body_ops(back, "matmul")) == 1
    assert not body_ops(back, "sigmoid") and not body_ops(back, "tanh") and not body_ops(back, "split")
    read = {x.attrs["index"] for x in back.inputs if x.op == "tuple_get" and x.inputs[0] is fwd}
    assert set(range(nc, nc + len(ys))) <= read
    assert recomputed_products(g2) == []
    assert_same(g, g2, feeds(), rtol=1e-4, atol=1e-6)


def test_without_restack_loop_hoist_would_recompute_the_product_in_batched_form(monkeypatch):
    import graphc.passes.loops as loops

    monkeypatch.setattr(loops, "restack_reads", lambda graph: (graph, False))
    g = lstm_graph()
    (mm,) = recomputed_products(optimize(g))
    assert mm.type_str == f"f32[{T},{B},{4 * H}]"


def test_restack_stacks_only_the_value_the_reverse_scan_reads():
    g = gru_graph()
    g2 = optimize(g)
    fwd, back = scans(g2)
    nc = fwd.attrs["num_carry"]
    # the parts of h @ w_h + b_h and the gates the reverse body reads, never the bare product
    # h @ w_h (its batched form died), and no activation is recomputed by the reverse body
    ys = fwd.attrs["body"].outputs[nc:]
    assert sorted(y.op for y in ys) == ["sigmoid", "sigmoid", "sub", "tanh", "tuple_get"]
    assert not any(y.op == "matmul" for y in ys)
    assert not body_ops(back, "sigmoid") and not body_ops(back, "tanh")
    assert recomputed_products(g2) == [] and len(body_ops(back, "matmul")) == 1
    assert_same(g, g2, feeds((T, B, 3 * H)), rtol=1e-4, atol=1e-6)


def test_restack_leaves_graphs_without_a_recomputed_value_alone():
    g = gc.Graph("fwd")
    with g:
        xs = g.input("xs", (T, B, F))
        w = g.param("w", (F, H))
        u = g.param("u", (H, H))
        h, hs = gc.scan(lambda h, x: (gc.tanh(x @ w + h @ u),) * 2, gc.constant(np.zeros((B, H), np.float32)), xs)
        g.output("hs2", hs * 2.0)  # elementwise on a stacked output: not a body value
        g.output("xw", xs @ w)  # the batched x-projection, built on the scan's xs only
    g2 = restack(g)
    assert [len(s.types) for s in scans(g2)] == [len(s.types) for s in scans(g)]
    assert_same(g, g2, feeds())


def test_an_accumulated_term_already_stacked_is_stacked_once():
    g = lstm_graph()
    g2 = optimize(g)
    _, back = scans(g2)
    body = back.attrs["body"]
    ys = body.outputs[back.attrs["num_carry"] :]
    assert len({y.id for y in ys}) == len(ys)  # the gate gradient: the xs' gradient and dW_h's term at once
    once = loop_accumulate(run_passes(g, passes=["cse", "fold", "loop_prune", "loop_hoist"]).graph)
    _, back = scans(once)
    ys = back.attrs["body"].outputs[back.attrs["num_carry"] :]
    assert len({y.id for y in ys}) == len(ys)


def test_gradients_after_restack_match_finite_differences_in_float64():
    g = lstm_graph("float64")
    g2 = optimize(g)
    assert recomputed_products(g2) == [] and len(body_ops(scans(g2)[1], "matmul")) == 1
    f = feeds(dtype=np.float64)
    got = results(g2, f)
    eps = 1e-6
    for name in ("w_h", "w_x", "b"):
        p = g.values[name]
        for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
            old = p[idx]
            p[idx] = old + eps
            up = results(g, f)["loss"]
            p[idx] = old - eps
            down = results(g, f)["loss"]
            p[idx] = old
            np.testing.assert_allclose(got[f"d_{name}"][idx], (up - down) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_the_input_weight_gradient_of_a_batch_first_sequence_is_one_product_over_all_rows():
    g = gc.Graph("batch_first")
    with g:
        x = g.input("x", (B, T, F))  # batch-first, made time-major for the scan
        w_x = g.param("w_x", (F, H), init="uniform")
        w_h = g.param("w_h", (H, H), init="uniform")
        xs = gc.transpose(x, (1, 0, 2))
        h, _ = gc.scan(lambda h, xt: (gc.tanh(xt @ w_x + h @ w_h), None), gc.constant(np.zeros((B, H), np.float32)), xs)
        loss = gc.mean(h * h)
        g.output("loss", loss)
        for name, d in gc.gradients(loss).items():
            g.output(f"d_{name}", d)
    g2 = optimize(g)
    d_wx = g2.outputs["d_w_x"]
    assert d_wx.op == "matmul" and [a.type_str for a in d_wx.inputs] == [f"f32[{F},{T * B}]", f"f32[{T * B},{H}]"]
    assert not [n for n in g2.live_nodes() if n.op == "matmul" and n.ndim == 3 and n.shape[-2:] == (F, H)]
    assert_same(g, g2, {"x": rng.standard_normal((B, T, F)).astype(np.float32)}, rtol=1e-4, atol=1e-6)
