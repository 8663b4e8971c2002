"""Passes on loops: the optimization passes and fusion inside bodies (recursively), pruning of
unread scan outputs, loop-invariant work moved out of scans (forward and backward).

Each pass is checked against the reference interpreter (values, and gradients where the graph
has them) with exact structure assertions.
"""

import numpy as np
from passcheck import assert_same

import graphc as gc
from graphc.backends.reference import run_body
from graphc.fusion import fuse, fuse_body
from graphc.ir.node import TupleType
from graphc.ir.subgraph import trace
from graphc.ops.registry import Kind, OpDef, all_ops, apply, register
from graphc.passes import PASSES, optimize
from graphc.passes.bodies import rewrite_body

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
