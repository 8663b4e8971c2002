"""Passes on loops: the optimization passes and fusion inside bodies (recursively), pruning of
unread scan outputs, loop-invariant work moved out of scans (forward and backward).

Each pass is checked against the reference interpreter (values, and gradients where the graph
has them) with exact structure assertions.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from passcheck import assert_same

import graphc as gc
from graphc.backends.reference import run_body
from graphc.fusion import fuse, fuse_body
from graphc.ir.node import TupleType
from graphc.ir.subgraph import trace
from graphc.ops.registry import Kind, OpDef, all_ops, apply, register
from graphc.passes import PASSES, optimize, rewrite, run_passes
from graphc.passes.bodies import rewrite_body
from graphc.passes.loops import loop_accumulate, loop_hoist, loop_prune

rng = np.random.default_rng(7)


# -- a test-only op running its body once (the scan op is the real user) --------------------------
def _infer_call(inputs, attrs):
    body = attrs["body"]
    if tuple((x.shape, x.dtype) for x in inputs) != body.input_types:
        raise gc.ShapeError("inputs do not match the body")
    outs = body.output_types
    return outs[0] if len(outs) == 1 else TupleType(outs)


def _ref_call(n, args, ctx):
    outs = run_body(n.attrs["body"], args, ctx.step)
    return outs[0] if len(outs) == 1 else tuple(outs)


if "loop_test_call" not in all_ops():
    register(OpDef("loop_test_call", Kind.OPAQUE, _infer_call, _ref_call))


def call(fn, *args):
    body, captures = trace(fn, list(args), op="loop_test_call")
    return apply("loop_test_call", [*args, *captures], {"body": body})


def body_ops(body):
    return [n.op for n in body.nodes if not n.is_source]


def calls(graph):
    return [n for n in graph.live_nodes() if n.op == "loop_test_call"]


def small_graph(fn):
    g = gc.Graph("outer")
    with g:
        x = g.input("x", (2, 3))
        w = g.param("w", (3, 3))
        y = call(lambda h: fn(h, w), x)
        for i in range(len(y.types)) if y.is_tuple else ():
            g.output(f"y{i}", gc.tuple_get(y, i))
        if not y.is_tuple:
            g.output("y", y)
    return g


FEEDS = {"x": rng.standard_normal((2, 3)).astype(np.float32)}


# -- the rewriter: a node with several outputs replaced output by output ---------------------------------
def test_replace_outputs_remaps_the_projections_of_a_retyped_node():
    g = gc.Graph("t")
    with g:
        x = g.input("x", (4,))
        a, b = gc.split(x, 2)  # one split node, two tuple_get projections; `a` is never used
        g.output("b", b * 2.0)

    def rule(rw, node, inputs):
        if not node.is_tuple:
            return None
        new = rw.copy(node, inputs)
        b2 = rw.emit("neg", [rw.emit("neg", [rw.emit("tuple_get", [new], {"index": 1})])])
        rw.replace_outputs(node, [None, b2])
        return new

    g2 = rewrite(g, rule, g.live_nodes())
    assert [n.op for n in g2.live_nodes() if not n.is_source] == ["split", "tuple_get", "neg", "neg", "mul"]
    np.testing.assert_array_equal(gc.run(g2, {"x": np.arange(4.0, dtype=np.float32)})["b"], [4.0, 6.0])
    removed = r"tuple_get#\d+ reads output 0 of split#\d+, which a pass removed"
    with pytest.raises(gc.GraphStructureError, match=removed):
        rewrite(g, rule)  # the dead projection of `a` too


def test_replace_outputs_checks_the_types():
    g = gc.Graph("t")
    with g:
        x = g.input("x", (4,))
        a, b = gc.split(x, 2)
        g.output("b", b)

    def rule(rw, node, inputs):
        if node.is_tuple:
            rw.replace_outputs(node, [None, inputs[0]])  # f32[4] for an f32[2] output
        return None

    wrong = r"output 1 of split#\d+ is f32\[2\]; .* is not a node of that type"
    with pytest.raises(gc.GraphStructureError, match=wrong):
        rewrite(g, rule)


# -- 4. passes and fusion inside bodies --------------------------------------------------------------
def test_cse_merges_duplicates_inside_a_body():
    g = small_graph(lambda h, w: gc.tanh(h @ w) + gc.tanh(h @ w))
    assert body_ops(calls(g)[0].attrs["body"]) == ["matmul", "tanh", "matmul", "tanh", "add"]
    g2 = PASSES["cse"](g)
    assert body_ops(calls(g2)[0].attrs["body"]) == ["matmul", "tanh", "add"]
    assert_same(g, g2, FEEDS)


def test_fold_and_simplify_rewrite_a_body():
    g = small_graph(lambda h, w: (h @ w) * (gc.constant(2.0) - 1.0) + 0.0)
    assert body_ops(calls(g)[0].attrs["body"]) == ["matmul", "sub", "mul", "add"]
    g2 = PASSES["simplify"](PASSES["fold"](g))
    assert body_ops(calls(g2)[0].attrs["body"]) == ["matmul"]
    assert_same(g, g2, FEEDS)


def test_dce_drops_the_dead_nodes_of_a_body():
    def fn(h, w):
        gc.exp(h)  # traced, never used
        return h @ w

    g = small_graph(fn)
    assert [n.op for n in calls(g)[0].attrs["body"].graph.nodes if not n.is_source] == ["exp", "matmul"]
    g2 = PASSES["dce"](g)
    assert [n.op for n in calls(g2)[0].attrs["body"].graph.nodes if not n.is_source] == ["matmul"]
    assert_same(g, g2, FEEDS)


def test_passes_rewrite_nested_bodies():
    g = small_graph(lambda h, w: call(lambda z: (z @ w) * 1.0 + gc.exp(gc.log(z * z)), h) - 0.0)
    outer = calls(g)[0].attrs["body"]
    (inner,) = [n.attrs["body"] for n in outer.nodes if n.op == "loop_test_call"]
    assert body_ops(outer) == ["loop_test_call", "sub"]
    assert body_ops(inner) == ["matmul", "mul", "mul", "log", "exp", "add"]
    g2 = optimize(g)
    outer2 = calls(g2)[0].attrs["body"]
    (inner2,) = [n.attrs["body"] for n in outer2.nodes if n.op == "loop_test_call"]
    assert body_ops(outer2) == ["loop_test_call"]
    assert body_ops(inner2) == ["matmul", "mul", "add"]  # * 1.0 gone; exp(log(z*z)) -> z*z
    assert_same(g, g2, FEEDS)


def test_optimized_bodies_compare_equal_and_cse_merges_them():
    g = gc.Graph("outer")
    with g:
        x = g.input("x", (2, 3))
        w = g.param("w", (3, 3))
        a = call(lambda h: gc.tanh(h @ w), x)
        b = call(lambda h: gc.tanh((h * 1.0) @ w), x)
        g.output("y", a + b)
    assert a.attrs["body"] != b.attrs["body"]
    g2 = optimize(g)
    a2, b2 = calls(g2)  # cse ran before simplify made them equal
    assert a2.attrs["body"] == b2.attrs["body"]
    g3 = PASSES["cse"](g2)
    assert len(calls(g3)) == 1
    assert_same(g, g3, FEEDS)


def test_rewrite_body_keeps_the_body_types_and_inputs():
    g = small_graph(lambda h, w: (h * 1.0) @ w)
    body = calls(g)[0].attrs["body"]
    new = rewrite_body(body, PASSES["simplify"])
    assert new.input_types == body.input_types and new.output_types == body.output_types
    assert [n.name for n in new.inputs] == [n.name for n in body.inputs]
    assert [n.name for n in new.captured] == ["w"] and new.graph.sealed
    args = [FEEDS["x"], g.values["w"]]
    np.testing.assert_allclose(run_body(new, args)[0], run_body(body, args)[0], rtol=1e-6)


def test_fuse_body_groups_a_bodys_nodes_like_a_graphs():
    g = small_graph(lambda h, w: (gc.tanh(h @ w + 1.0) * 2.0, gc.exp(h) + h))
    body = calls(g)[0].attrs["body"]
    kernels = fuse_body(body)
    assert [k.kind for k in kernels] == ["output-fusable", "elementwise"]
    gemm, ew = kernels
    assert [body.graph.nodes[i].op for i in gemm.node_ids] == ["matmul", "add", "tanh", "mul"]
    assert gemm.outputs == [body.outputs[0].id] and ew.outputs == [body.outputs[1].id]
    # the graph holding the body: the op with the body is one opaque kernel, as before
    top = fuse(g.live_nodes(), g.roots())
    assert [k.kind for k in top] == ["opaque", "opaque", "opaque"]


# -- scans: helpers ---------------------------------------------------------------------------------
T, B, F, H = 5, 4, 3, 6


def scans(graph):
    return [n for n in graph.live_nodes() if n.op == "scan"]


def matmuls(graph):
    """(matmuls outside every scan body, [matmuls inside each scan body, nested ones counted in])."""

    def inside(body):
        return sum(1 for n in body.nodes if n.op == "matmul") + sum(inside(n.attrs["body"]) for n in body.nodes
                                                                        if n.op == "scan")  # fmt: skip

    live = graph.live_nodes()
    return sum(1 for n in live if n.op == "matmul"), [inside(n.attrs["body"]) for n in live if n.op == "scan"]


def feeds(*shapes_by_name, seed=0):
    r = np.random.default_rng(seed)
    return {k: r.standard_normal(shape).astype(np.float32) for k, shape in shapes_by_name}


def rnn_graph(train=True, reverse=False, batch=B):
    """A tanh RNN over xs [T, B, F]: loss on every hidden state; gradients of the weights as outputs."""
    g = gc.Graph("rnn")
    with g:
        xs = g.input("xs", (T, batch, F))
        h0 = g.input("h0", (batch, H))
        w_ih, w_hh = g.param("w_ih", (F, H)), g.param("w_hh", (H, H))
        b = g.param("b", (H,), init="uniform")

        def cell(h, x):
            h = gc.tanh(x @ w_ih + h @ w_hh + b)
            return h, h

        h_last, hs = gc.scan(cell, h0, xs, reverse=reverse)
        loss = gc.mean(hs * hs) + gc.mean(h_last)
        g.output("loss", loss)
        if train:
            for name, d in gc.gradients(loss).items():
                g.output(f"d_{name}", d)
    return g


RNN_FEEDS = feeds(("xs", (T, B, F)), ("h0", (B, H)))


def lstm_graph():
    """An LSTM-like cell with a tuple carry (h, c), one fused gate weight for each of x and h."""
    g = gc.Graph("lstm")
    with g:
        xs = g.input("xs", (T, B, F))
        h0, c0 = g.input("h0", (B, H)), g.input("c0", (B, H))
        w_x, w_h = g.param("w_x", (F, 4 * H)), g.param("w_h", (H, 4 * H))
        b = g.param("b", (4 * H,), init="uniform")

        def cell(carry, x):
            h, c = carry
            z = x @ w_x + h @ w_h + b
            i, f, o, u = (z[:, k * H : (k + 1) * H] for k in range(4))
            c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(u)
            h = gc.sigmoid(o) * gc.tanh(c)
            return (h, c), h

        (h_last, c_last), hs = gc.scan(cell, (h0, c0), xs)
        loss = gc.mean(hs * hs) + gc.mean(c_last)
        g.output("loss", loss)
        for name, d in gc.gradients(loss).items():
            g.output(f"d_{name}", d)
    return g


LSTM_FEEDS = feeds(("xs", (T, B, F)), ("h0", (B, H)), ("c0", (B, H)))


# -- 1. loop_prune -----------------------------------------------------------------------------------------
def test_prune_clears_saved_when_no_gradient_reads_the_carry_ins_and_a_later_gradient_reads_a_copys():
    g = rnn_graph(train=False)
    g2 = loop_prune(g)
    (s,), (s2,) = scans(g), scans(g2)
    assert s.attrs["saved"] is True and s2.attrs["saved"] is False and len(s2.types) == 1 + 1 + 0
    assert_same(g, g2, RNN_FEEDS)
    for graph in (g, g2):  # differentiated after the pass: the unsaved scan's vjp reads a saving copy
        with graph:
            for name, d in gc.gradients(graph.outputs["loss"]).items():
                graph.output(f"d_{name}", d)
    (s2,), saving = [n for n in scans(g2) if not n.attrs["saved"]], [n for n in scans(g2) if n.attrs["saved"]]
    assert len(saving) == 2 and sorted(n.attrs["reverse"] for n in saving) == [False, True]
    assert s2.inputs == next(n for n in saving if not n.attrs["reverse"]).inputs
    assert_same(g, g2, RNN_FEEDS)


def test_prune_drops_unread_ys_and_the_carries_no_read_output_needs():
    g = gc.Graph("p")
    with g:
        xs = g.input("xs", (T, B, F))
        w = g.param("w", (F, H))

        def step(carry, x):
            h, n = carry
            h = gc.tanh(x @ w + h)
            return (h, n + 1.0), (h * 2.0, gc.exp(x))  # the step counter n and both ys: unread

        (h_last, _), _ = gc.scan(step, (gc.zeros_like(xs[0] @ w), gc.constant(0.0)), xs)
        g.output("h", h_last)
    (s,) = scans(g)
    assert s.attrs["num_carry"] == 2 and len(s.types) == 2 + 2 + 2
    g2 = loop_prune(g)
    (s2,) = scans(g2)
    # no gradient reads the carry-ins: the scan stacks none (saved cleared)
    assert s2.attrs["num_carry"] == 1 and s2.attrs["num_xs"] == 1 and len(s2.types) == 1 + 0 + 0
    assert s.attrs["saved"] is True and s2.attrs["saved"] is False
    assert body_ops(s2.attrs["body"]) == ["matmul", "add", "tanh"]
    assert_same(g, g2, feeds(("xs", (T, B, F))))


def test_prune_keeps_the_carries_a_read_y_depends_on():
    g = gc.Graph("p")
    with g:
        xs = g.input("xs", (T, B))

        def step(carry, x):
            a, b = carry
            return (a + x, b * 0.5), (a * b, a)  # y 0 reads both carries; y 1 is unread

        _, (ab, _) = gc.scan(step, (gc.constant(np.ones(B, np.float32)), gc.constant(np.ones(B, np.float32))), xs)
        g.output("ab", ab)
    g2 = loop_prune(g)
    (s2,) = scans(g2)
    assert s2.attrs["num_carry"] == 2 and len(s2.attrs["body"].outputs) == 3
    assert_same(g, g2, feeds(("xs", (T, B))))


def test_prune_in_a_training_graph_leaves_only_what_the_gradients_read():
    g = rnn_graph()
    g2 = loop_prune(g)
    fwd, back = scans(g2)
    assert len(fwd.types) == 3  # h_last, hs, the residuals the backward scan reads
    assert back.attrs["num_carry"] == 4  # dh and the three weight-gradient accumulators
    assert_same(g, g2, RNN_FEEDS)


# -- 2. loop_hoist -----------------------------------------------------------------------------------------
def test_hoist_moves_the_input_projection_out_of_the_forward_loop():
    g = rnn_graph(train=False)
    assert matmuls(g) == (0, [2])
    g2 = loop_hoist(g)
    assert matmuls(g2) == (1, [1])
    (proj,) = [n for n in g2.live_nodes() if n.op == "matmul"]
    assert proj.type_str == "f32[5,4,6]" and proj.inputs[0] is g2.inputs["xs"]  # xs @ w_ih, all steps at once
    (s,) = scans(g2)
    assert s.attrs["num_xs"] == 1 and s.inputs[1] is proj  # the scan reads the projection, not xs
    assert [n.name for n in s.attrs["body"].captured] == ["w_hh", "b"]
    assert_same(g, g2, RNN_FEEDS)


def test_hoist_computes_captured_only_work_once_before_the_loop():
    g = gc.Graph("h")
    with g:
        xs = g.input("xs", (T, B, H))
        w = g.param("w", (H, H))
        _, ys = gc.scan(lambda h, x: (gc.tanh(h @ (w.T * 0.5)), h * x), gc.zeros_like(xs[0]), xs)
        g.output("ys", ys)
    assert body_ops(scans(g)[0].attrs["body"]) == ["transpose", "mul", "matmul", "tanh", "mul"]
    g2 = loop_hoist(g)
    (s,) = scans(g2)
    assert body_ops(s.attrs["body"]) == ["matmul", "tanh", "mul"]
    assert [n.type_str for n in s.attrs["body"].captured] == ["f32[6,6]"]
    assert s.inputs[-1].op == "mul" and s.inputs[-1].inputs[0].op == "transpose"
    assert_same(g, g2, feeds(("xs", (T, B, H))))


def test_hoist_leaves_random_ops_reductions_and_carry_work_in_the_loop():
    g = gc.Graph("h")
    with g:
        xs = g.input("xs", (T, B, F))

        def step(h, x):
            d = gc.dropout(x, 0.5, seed=3)  # draws anew at every step: stays
            s = gc.sum(gc.exp(x), axis=1)  # exp moves out; the reduction has no batched form here
            return h + s, d

        _, ys = gc.scan(step, gc.constant(np.zeros(B, np.float32)), xs)
        g.output("ys", ys)
        g.output("last", gc.scan(step, gc.constant(np.zeros(B, np.float32)), xs)[0])
    g2 = loop_hoist(g)
    for s in scans(g2):
        assert body_ops(s.attrs["body"]) == ["sum", "add", "dropout_mask", "mul"]
    assert [n.op for n in g2.live_nodes() if not n.is_source and n.op not in ("scan", "tuple_get")] == ["exp"]
    assert_same(g, g2, feeds(("xs", (T, B, F))), rtol=0, atol=0)


def test_hoist_in_a_reverse_scan():
    g = rnn_graph(train=False, reverse=True)
    g2 = loop_hoist(g)
    assert matmuls(g2) == (1, [1]) and scans(g2)[0].attrs["reverse"] is True
    assert_same(g, g2, RNN_FEEDS)


def test_hoist_in_nested_scans_moves_work_out_level_by_level():
    g = gc.Graph("n")
    with g:
        xs = g.input("xs", (T, 2, B, F))  # T outer steps of 2 inner steps
        w_ih, w_hh = g.param("w_ih", (F, H)), g.param("w_hh", (H, H))

        def outer(h, x_outer):
            def inner(h, x):
                h = gc.tanh(x @ w_ih + h @ w_hh)
                return h, h

            h, hs = gc.scan(inner, h, x_outer)
            return h, gc.sum(hs, axis=0)

        h_last, ys = gc.scan(outer, gc.zeros_like(xs[0, 0] @ w_ih), xs)
        loss = gc.mean(ys * ys) + gc.mean(h_last)
        g.output("loss", loss)
        for name, d in gc.gradients(loss).items():
            g.output(f"d_{name}", d)
    f = feeds(("xs", (T, 2, B, F)))
    outer_fwd = scans(g)[0]
    assert matmuls(g)[1][0] == 2
    g2 = loop_hoist(g)
    fwd = scans(g2)[0]
    # x @ w_ih left the inner loop (batched over its 2 steps), then the outer one (over all T*2)
    assert matmuls(g2)[1][0] == 1 and outer_fwd.attrs["body"] != fwd.attrs["body"]
    (proj,) = [n for n in g2.live_nodes() if n.op == "matmul" and n.inputs[0] is g2.inputs["xs"]]
    assert proj.type_str == "f32[5,2,4,6]"
    assert_same(g, g2, f)
    assert_same(g, optimize(g), f, rtol=1e-4, atol=1e-6)


# -- 3. loop_accumulate and the sum of batched products ---------------------------------------------------------
def test_accumulator_carry_becomes_stacked_terms_and_one_sum():
    g = gc.Graph("a")
    with g:
        xs = g.input("xs", (T, B))

        def step(carry, x):
            h, acc = carry
            h = gc.tanh(h + x)
            return (h, acc + h * h), None

        init = (gc.constant(np.zeros(B, np.float32)), gc.constant(np.full(B, 0.5, np.float32)))
        (h_last, total), _ = gc.scan(step, init, xs)
        g.output("total", total)
        g.output("h", h_last)
    g2 = loop_accumulate(g)
    (s,) = scans(g2)
    assert s.attrs["num_carry"] == 1 and len(s.attrs["body"].outputs) == 2  # h; the stacked h*h
    (total,) = [n for n in g2.live_nodes() if n is g2.outputs["total"]]
    assert total.op == "add" and total.inputs[1].op == "sum" and total.inputs[1].attrs["axes"] == (0,)
    assert_same(g, g2, feeds(("xs", (T, B))))


def test_an_accumulator_whose_steps_are_read_stays_a_carry():
    g = gc.Graph("a")
    with g:
        xs = g.input("xs", (T, B))
        total, partial = gc.scan(lambda acc, x: (acc + x, acc), gc.constant(np.zeros(B, np.float32)), xs)
        g.output("partial", partial)  # reads acc at every step
        g.output("total", total)
    g2 = loop_accumulate(g)
    assert scans(g2)[0].attrs["num_carry"] == 1
    assert_same(g, g2, feeds(("xs", (T, B))))


def test_rnn_training_graph_keeps_only_the_recurrent_product_in_the_loops():
    g = rnn_graph()
    # forward: x@w_ih, h@w_hh; backward: both recomputed, dh@w_hh^T and the two weight gradients
    assert matmuls(g) == (0, [2, 5])
    g2 = optimize(g)
    assert matmuls(g2) == (3, [1, 1])  # the recomputed h@w_hh is read from the forward scan (restack)
    fwd, back = scans(g2)
    assert fwd.attrs["num_carry"] == 1 and back.attrs["num_carry"] == 1  # the accumulators are gone
    (rec,) = [n for n in back.attrs["body"].nodes if n.op == "matmul"]
    assert rec.inputs[1].name in [c.name for c in back.attrs["body"].captured]  # dh @ w_hh^T, w_hh^T captured
    outside = [n for n in g2.live_nodes() if n.op == "matmul"]
    shapes = sorted(f"{n.inputs[0].type_str}@{n.inputs[1].type_str}" for n in outside)
    # the input projection and the weight gradients over T*B = 20 rows (the forward stacks h@w_hh + x@w_ih)
    assert shapes == ["f32[3,20]@f32[20,6]", "f32[5,4,3]@f32[3,6]", "f32[6,20]@f32[20,6]"]
    assert_same(g, g2, RNN_FEEDS, rtol=1e-4, atol=1e-6)


def test_lstm_training_graph_moves_products_and_gradients_out_of_both_loops():
    g = lstm_graph()
    before = matmuls(g)
    g2 = optimize(g)
    after = matmuls(g2)
    assert before == (0, [2, 5]) and after == (3, [1, 1])
    fwd, back = scans(g2)
    assert fwd.attrs["num_carry"] == 2 and back.attrs["num_carry"] == 2  # (dh, dc): no accumulators
    assert_same(g, g2, LSTM_FEEDS, rtol=1e-4, atol=1e-6)


def test_each_loop_pass_can_be_switched_off():
    g = rnn_graph()
    opt = run_passes(g, disable=("loop_hoist", "loop_accumulate"))
    assert matmuls(opt.graph) == (0, [2, 5])
    assert [r.stage for r in opt.summary.rows][2:3] == ["loop_prune"]
    assert matmuls(optimize(g, disable=("loop_accumulate",))) == (1, [1, 3])
    assert_same(g, opt.graph, RNN_FEEDS, rtol=1e-4, atol=1e-6)


def test_sum_of_batched_products_becomes_one_product_over_all_rows():
    g = gc.Graph("s")
    with g:
        a, b = g.input("a", (T, B, F)), g.input("b", (T, B, H))
        sym = g.input("sym", (T, "batch", F))
        g.output("w", gc.sum(gc.swapaxes(a) @ b, axis=0))
        g.output("w_sym", gc.sum(gc.swapaxes(sym) @ sym, axis=0))  # T*batch is no static shape: left
    g2 = optimize(g)
    prods = {n.type_str: n for n in g2.live_nodes() if n.op == "matmul"}
    assert sorted(prods) == ["f32[3,6]", "f32[5,3,3]"]
    w = prods["f32[3,6]"]
    assert [x.type_str for x in w.inputs] == ["f32[3,20]", "f32[20,6]"] and w is g2.outputs["w"]
    f = feeds(("a", (T, B, F)), ("b", (T, B, H)), ("sym", (T, 2, F)))
    assert_same(g, g2, f)


def test_optimized_rnn_bodies_fuse_into_one_kernel_per_loop_stage():
    fwd, back = scans(optimize(rnn_graph()))

    def groups(body):
        kernels = fuse_body(body, lambda n: n.opdef.kind is Kind.REDUCTION)
        return [(k.kind, [body.graph.nodes[i].op for i in k.node_ids]) for k in kernels]

    # forward step: h @ w_hh with the projection add, the bias add and tanh as its epilogue
    assert groups(fwd.attrs["body"]) == [("output-fusable", ["matmul", "add", "add", "tanh"])]
    # reverse step: the gate derivative and the bias-gradient sum in one loop, then dh @ w_hh^T
    assert groups(back.attrs["body"]) == [("reduction", ["add", "mul", "sum"]), ("output-fusable", ["matmul"])]


def test_hoist_refuses_a_batched_form_that_broadcasting_would_misalign():
    g = gc.Graph("h")
    with g:
        xs = g.input("xs", (T, F))
        c = g.param("c", (B, F))
        w = g.param("w", (F, F))

        def step(h, x):
            # x [F] + c [B, F] is [B, F]: stacked, [T, F] + [B, F] would not put T in front
            return h + (x + c) @ w + (c @ w) @ (x.reshape((F, 1)) * w), None

        h_last, _ = gc.scan(step, gc.zeros_like(c), xs)
        g.output("h", h_last)
    g2 = loop_hoist(g)
    (s,) = scans(g2)
    # c @ w moves out (captured only); x + c and the products of x with w's rows stay
    assert body_ops(s.attrs["body"]) == ["add", "matmul", "add", "reshape", "mul", "matmul", "add"]
    assert [n.type_str for n in s.attrs["body"].captured] == ["f32[4,3]", "f32[3,3]", "f32[4,3]"]
    assert_same(g, g2, feeds(("xs", (T, F))))


GRAPHS = {
    "rnn": (rnn_graph, RNN_FEEDS),
    "reverse rnn": (lambda: rnn_graph(reverse=True), RNN_FEEDS),
    "lstm (tuple carry)": (lstm_graph, LSTM_FEEDS),
}


@pytest.mark.parametrize("name", ["loop_prune", "loop_hoist", "loop_accumulate", "all"])
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_loop_passes_preserve_values_and_gradients(graph, name):
    make, f = GRAPHS[graph]
    g = make()
    g2 = optimize(g) if name == "all" else PASSES[name](g)
    assert_same(g, g2, f, rtol=1e-4, atol=1e-6)


def test_reverse_rnn_training_graph_moves_the_same_work_out():
    g = rnn_graph(reverse=True)
    g2 = optimize(g)
    assert matmuls(g) == (0, [2, 5]) and matmuls(g2) == (3, [1, 1])
    assert [s.attrs["reverse"] for s in scans(g2)] == [True, False]


def test_accumulators_of_loop_invariant_terms_stay_carries():
    g = gc.Graph("a")
    with g:
        xs = g.input("xs", (T, B))
        w = g.param("w", (B,))

        def step(carry, x):
            a, b, c = carry
            return (a + w, b + np.arange(B, dtype=np.float32), c + x), None  # only c's term varies

        zeros = gc.constant(np.zeros(B, np.float32))
        (a, b, c), _ = gc.scan(step, (zeros, zeros, zeros), xs)
        g.output("abc", a + 2.0 * b + 3.0 * c)
    g2 = loop_accumulate(g)
    (s,) = scans(g2)
    assert s.attrs["num_carry"] == 2 and s.attrs["num_xs"] == 0  # c's sum is the sum of xs, after the loop
    assert [n.op for n in g2.live_nodes() if n.op == "sum"] == ["sum"]
    assert_same(g, g2, feeds(("xs", (T, B))))


# -- random scans ----------------------------------------------------------------------------------------
# Each op maps two [B, D] values of the body (and the captured w [D, D], v [D]) to a [B, D] value.
RD = 3
BODY_OPS = [
    lambda a, b, w, v: gc.tanh(a),
    lambda a, b, w, v: a * b,
    lambda a, b, w, v: a + b,
    lambda a, b, w, v: a @ w,
    lambda a, b, w, v: a @ (w.T * 0.5),
    lambda a, b, w, v: gc.sigmoid(a + v),
    lambda a, b, w, v: a - gc.sum(b, axis=0),
    lambda a, b, w, v: gc.exp(gc.tanh(a)) * 0.5,
    lambda a, b, w, v: gc.tanh(a @ w + b @ w),
]

scan_program = st.tuples(
    st.lists(st.tuples(st.integers(0, len(BODY_OPS) - 1), st.integers(0, 15), st.integers(0, 15)), max_size=6),
    st.integers(1, 2),  # carries
    st.lists(st.integers(0, 15), min_size=3, max_size=3),  # which values become the carries and the y
    st.booleans(),  # reverse
    st.booleans(),  # an accumulator carry acc + x_t^T @ value
)


def random_scan_graph(program):
    steps, n_carry, picks, reverse, accumulate = program
    g = gc.Graph("random_scan")
    with g:
        xs = g.input("xs", (T, 2, RD), "float64")
        w = g.param("w", (RD, RD), init="normal", dtype="float64")
        v = g.param("v", (RD,), init="normal", dtype="float64")

        def step(carry, x):
            carry = list(carry)
            acc = carry.pop() if accumulate else None
            pool = [*carry, x]
            for op, i, j in steps:
                pool.append(BODY_OPS[op](pool[i % len(pool)], pool[j % len(pool)], w, v))
            new = [gc.tanh(pool[(picks[c] + len(carry) + 1) % len(pool)]) for c in range(n_carry)]
            if accumulate:
                new.append(acc + gc.swapaxes(x) @ pool[picks[2] % len(pool)])
            return tuple(new), pool[picks[2] % len(pool)]

        init = [gc.constant(np.full((2, RD), 0.1 * (c + 1)), "float64") for c in range(n_carry)]
        init += [gc.constant(np.full((RD, RD), 0.25), "float64")] if accumulate else []
        final, ys = gc.scan(step, tuple(init), xs, reverse=reverse)
        loss = gc.mean(ys * ys) + sum(gc.mean(f) for f in final)
        g.output("loss", loss)
        for name, d in zip(["xs", "w", "v"], gc.grad(loss, [xs, w, v])):
            g.output(f"d_{name}", d)
    return g


RANDOM = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=150, **RANDOM)
@given(scan_program, st.sampled_from(["loop_prune", "loop_hoist", "loop_accumulate", "all"]))
def test_loop_passes_on_random_scans_keep_values_and_gradients(program, name):
    g = random_scan_graph(program)
    g2 = optimize(g) if name == "all" else PASSES[name](g)
    f = {"xs": np.random.default_rng(0).standard_normal((T, 2, RD))}
    assert_same(g, g2, f, rtol=1e-7, atol=1e-9)


def test_bodies_made_by_the_loop_passes_round_trip_through_graph_files(tmp_path):
    g2 = optimize(lstm_graph())
    g2.save(tmp_path / "lstm.json")
    g3 = gc.Graph.load(tmp_path / "lstm.json")
    assert g3.text() == g2.text() and [s.attrs["body"] for s in scans(g3)] == [s.attrs["body"] for s in scans(g2)]
    a, b = gc.run(g2, LSTM_FEEDS), gc.run(g3, LSTM_FEEDS)
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_with_a_symbolic_batch_the_weight_gradients_stay_batched_products_after_the_loop():
    g = rnn_graph(batch="batch")
    g2 = optimize(g)
    assert matmuls(g2) == (3, [1, 1])
    grads = [n for n in g2.live_nodes() if n.op == "matmul" and n.inputs[0].op == "transpose"]
    assert sorted(n.type_str for n in grads) == ["f32[5,3,6]", "f32[5,6,6]"]  # summed over T next
    assert all(g2.outputs[k].op == "sum" for k in ("d_w_ih", "d_w_hh"))
    assert_same(g, g2, RNN_FEEDS, rtol=1e-4, atol=1e-6)


def test_body_nodes_keep_their_grad_of_labels_through_the_passes():
    g = rnn_graph()
    labels = {n.grad_of for n in scans(g)[1].attrs["body"].nodes if n.is_backward}
    assert "tanh#14" in labels  # the forward body's tanh, which the backward body differentiates
    back = scans(optimize(g))[1].attrs["body"]
    kept = {n.grad_of for n in back.nodes if n.is_backward}
    assert kept and kept <= labels  # as written: they name nodes of other graphs (the forward body's)
