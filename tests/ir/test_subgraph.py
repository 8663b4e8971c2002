"""Sub-graphs: traced bodies with explicit inputs, captured values and outputs, as op attributes.

`call_body` below is a test-only op that runs its body once (the scan op is the real user):
its inputs are the body's inputs and then the captured values, its outputs the body's.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.reference import run_body
from graphc.errors import GraphStructureError, InputError
from graphc.ir.node import TupleType
from graphc.ir.subgraph import SubGraph, trace
from graphc.ops.registry import Kind, OpDef, all_ops, apply, register
from graphc.passes import cse


def _infer_call(inputs, attrs):
    body = attrs["body"]
    if tuple((x.shape, x.dtype) for x in inputs) != body.input_types:
        raise gc.ShapeError("inputs do not match the body")
    outs = body.output_types
    return outs[0] if len(outs) == 1 else TupleType(outs)


if "call_body" not in all_ops():
    register(OpDef("call_body", Kind.OPAQUE, _infer_call,
                   lambda n, args, ctx: _one(run_body(n.attrs["body"], args, ctx.step))))  # fmt: skip


def _one(outs):
    return outs[0] if len(outs) == 1 else tuple(outs)


def call(fn, *args, names=None):
    body, captures = trace(fn, list(args), names=names, op="call_body")
    return apply("call_body", [*args, *captures], {"body": body})


def rnn_cell(w):
    return lambda h: gc.tanh(h @ w + 1.0)


def outer_graph():
    with gc.Graph("outer") as g:
        x = g.input("x", (2, 3))
        w = g.param("w", (3, 3))
    return g, x, w


# -- tracing and capture --------------------------------------------------------------------
def test_trace_captures_enclosing_values_as_inputs_after_the_others():
    g, x, w = outer_graph()
    with g:
        body, captures = trace(lambda h, s: (gc.tanh(h @ w) * s, h), [x, ((), "float32")], names=["h", "s"])
    assert captures == [w]
    assert [n.name for n in body.inputs] == ["h", "s"] and [n.name for n in body.captured] == ["w"]
    assert body.input_types == (((2, 3), "float32"), ((), "float32"), ((3, 3), "float32"))
    assert body.output_types == (((2, 3), "float32"), ((2, 3), "float32"))
    assert body.outputs[1] is body.inputs[0]  # an output may be an input
    assert all(n.graph is body.graph for n in body.nodes) and body.graph.enclosing is g
    assert len(g.nodes) == 2  # nothing was added to the enclosing graph


def test_a_value_captured_twice_is_one_input():
    g, x, w = outer_graph()
    with g:
        body, captures = trace(lambda h: h @ w + h @ w.T, [x])
    assert captures == [w] and len(body.captured) == 1


def test_nested_bodies_capture_through_the_enclosing_body():
    g, x, w = outer_graph()
    with g:

        def outer_fn(h):
            inner, inner_caps = trace(lambda z: z @ w, [h], op="inner")
            assert inner_caps[0].graph is h.graph and inner_caps[0].name == "w"  # the outer body's input
            return apply("call_body", [h, *inner_caps], {"body": inner})

        body, captures = trace(outer_fn, [x])
    assert captures == [w]
    out = run_body(body, [np.ones((2, 3), np.float32), g.values["w"]])
    np.testing.assert_allclose(out[0], np.ones((2, 3)) @ g.values["w"], rtol=1e-6)


def test_constants_made_in_a_body_stay_in_the_body():
    g, x, w = outer_graph()
    with g:
        body, _ = trace(lambda h: h @ (w * 2.0), [x])
    assert len(g.nodes) == 2 and [n.op for n in body.nodes].count("const") == 1


def test_run_body_with_the_reference_interpreter():
    g, x, w = outer_graph()
    with g:
        body, captures = trace(lambda h: (rnn_cell(w)(h), h * 2.0), [x])
    h = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    out = run_body(body, [h, g.values["w"]])
    np.testing.assert_allclose(out[0], np.tanh(h @ g.values["w"] + 1.0), rtol=1e-6)
    np.testing.assert_array_equal(out[1], h * 2.0)
    with pytest.raises(InputError, match=r"^body 'outer/body' takes 2 inputs, got 1$"):
        run_body(body, [h])
    with pytest.raises(InputError, match=r"input 1 \(w\) is f32\[3,3\], got float32\[3, 2\]"):
        run_body(body, [h, np.zeros((3, 2), np.float32)])
    with pytest.raises(InputError, match=r"input 0 \(x0\) is f32\[2,3\], got float64\[2, 3\]"):
        run_body(body, [h.astype(np.float64), g.values["w"]])


def test_a_body_op_runs_on_both_backends():
    g, x, w = outer_graph()
    with g:
        y = call(lambda h: (rnn_cell(w)(h), h * 2.0), x)
        a, b = gc.tuple_get(y, 0), gc.tuple_get(y, -1)
        g.output("y", gc.sum(a) + gc.sum(b))
    feeds = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    want = np.tanh(feeds["x"] @ g.values["w"] + 1.0).sum() + 2 * feeds["x"].sum()
    np.testing.assert_allclose(gc.run(g, feeds)["y"], want, rtol=1e-5)
    np.testing.assert_allclose(gc.compile(g, "numba")(feeds)["y"], want, rtol=1e-5)


# -- content hash ------------------------------------------------------------------------------
def test_equal_bodies_are_equal_and_hash_equal_whatever_their_names_and_lines():
    g, x, w = outer_graph()
    with g:
        a, _ = trace(rnn_cell(w), [x], names=["h"])
        b, _ = trace(lambda z: gc.tanh(z @ w + 1.0), [x], names=["z"], name="other")
    assert a is not b and a == b and hash(a) == hash(b) and a.digest == b.digest
    assert len({a, b}) == 1
    from graphc.ir.node import Attrs

    assert Attrs({"body": a}).key() == Attrs({"body": b}).key() == (("body", ("subgraph", a.digest)),)


@pytest.mark.parametrize("other", [
    lambda w: lambda h: gc.tanh(h @ w + 2.0),  # another constant
    lambda w: lambda h: gc.sigmoid(h @ w + 1.0),  # another op
    lambda w: lambda h: gc.tanh(h @ w.T + 1.0),  # other wiring
    lambda w: lambda h: (gc.tanh(h @ w + 1.0), h),  # another output
])  # fmt: skip
def test_different_bodies_differ(other):
    g, x, w = outer_graph()
    with g:
        a, _ = trace(rnn_cell(w), [x])
        b, _ = trace(other(w), [x])
    assert a != b and a.digest != b.digest


def test_bodies_with_different_input_types_differ():
    g, x, w = outer_graph()
    with g:
        a, _ = trace(lambda h: h * 2.0, [((2, 3), "float32")])
        b, _ = trace(lambda h: h * 2.0, [((2, 3), "float64")])
        c, _ = trace(lambda h: h * 2.0, [((3, 2), "float32")])
    assert len({a.digest, b.digest, c.digest}) == 3


def test_cse_merges_ops_with_equal_bodies():
    g, x, w = outer_graph()
    with g:
        y1 = call(rnn_cell(w), x)
        y2 = call(lambda z: gc.tanh(z @ w + 1.0), x, names=["z"])
        g.output("y", y1 + y2)
    assert y1.attrs["body"] == y2.attrs["body"]
    g2 = cse(g)
    assert [n.op for n in g2.nodes].count("call_body") == 1
    feeds = {"x": np.ones((2, 3), np.float32)}
    np.testing.assert_array_equal(gc.run(g2, feeds)["y"], gc.run(g, feeds)["y"])


# -- text form, networkx, graph files -------------------------------------------------------------
def test_text_form_prints_a_body_as_a_nested_block():
    g, x, w = outer_graph()
    with g:
        y = call(lambda h: (rnn_cell(w)(h), h), x, names=["h"])
        g.output("y", gc.tuple_get(y, 0))
    assert g.text() == "\n".join([
        "graph outer(x: f32[2,3]) params(w: f32[3,3]) {",
        "  %2: (f32[2,3], f32[2,3]) = call_body(x, w, body=body(h: f32[2,3]) captures(w: f32[3,3]) {",
        "    %2: f32[2,3] = matmul(h, w)",
        "    %4: f32[2,3] = add(%2, 1.0)",
        "    %5: f32[2,3] = tanh(%4)",
        "    return %5, h",
        "  })",
        "  %3: f32[2,3] = tuple_get(%2, index=0)",
        "  return y=%3",
        "}",
    ])  # fmt: skip


def test_text_form_nests_bodies_in_bodies():
    g, x, w = outer_graph()
    with g:
        y = call(lambda h: call(lambda z: z * 2.0, h, names=["z"]) + h, x, names=["h"])
        g.output("y", y)
    assert g.text().splitlines()[1:-2] == [
        "  %2: f32[2,3] = call_body(x, body=body(h: f32[2,3]) {",
        "    %1: f32[2,3] = call_body(h, body=body(z: f32[2,3]) {",
        "      %2: f32[2,3] = mul(z, 2.0)",
        "      return %2",
        "    })",
        "    %2: f32[2,3] = add(%1, h)",
        "    return %2",
        "  })",
    ]


def test_to_networkx_nests_the_body():
    g, x, w = outer_graph()
    with g:
        y = call(lambda h: (rnn_cell(w)(h), h), x)
        g.output("y", gc.tuple_get(y, 0))
    d = g.to_networkx()
    data = d.nodes[y.id]
    assert data["shape"] is None and data["types"] == (((2, 3), "float32"), ((2, 3), "float32"))
    inner = data["attrs"]["body"]
    body = y.attrs["body"]
    assert inner.graph == {
        "name": "outer/call_body",
        "inputs": [0],
        "captured": [1],
        "outputs": [body.outputs[0].id, 0],
    }
    assert [inner.nodes[i]["op"] for i in inner.nodes] == ["input", "input", "matmul", "const", "add", "tanh"]
    assert inner.edges[0, 2]["positions"] == [0] and inner.edges[1, 2]["positions"] == [1]
    assert d.edges[y.id, g.outputs["y"].id]["types"] == data["types"]


def test_graph_file_round_trip_of_bodies_with_constants(tmp_path):
    g, x, w = outer_graph()
    with g:
        table = gc.constant(np.arange(9, dtype=np.float32).reshape(3, 3))
        y = call(lambda h: call(lambda z: z @ table + 0.5, h) * 3.0 + h @ w, x)
        g.output("y", y)
    g.save(tmp_path / "g.json")
    h = gc.load_graph(tmp_path / "g.json")
    assert h.text() == g.text()
    body = h.nodes[y.id].attrs["body"]
    assert isinstance(body, SubGraph) and body == y.attrs["body"] and body.graph.sealed
    feeds = {"x": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}
    np.testing.assert_array_equal(gc.run(h, feeds)["y"], gc.run(g, feeds)["y"])


def test_graph_file_refuses_a_body_with_a_bad_input_list(tmp_path):
    import json

    g, x, w = outer_graph()
    with g:
        g.output("y", call(lambda h: h * 2.0, x))
    g.save(tmp_path / "g.json")
    doc = json.loads((tmp_path / "g.json").read_text())
    doc["nodes"][2]["attrs"]["body"]["$subgraph"]["inputs"] = [2]
    (tmp_path / "g.json").write_text(json.dumps(doc))
    with pytest.raises(gc.GraphFileError, match=r"body input 2 is a mul, not an input"):
        gc.load_graph(tmp_path / "g.json")


# -- errors --------------------------------------------------------------------------------------
def test_a_body_reading_a_node_of_an_unrelated_graph_is_an_error_naming_op_and_line():
    g, x, w = outer_graph()
    with gc.Graph("other") as other:
        v = other.input("v", (2, 3))
    with g, pytest.raises(GraphStructureError, match=r"^mul: input v belongs to graph 'other', which is neither "
                          r"the graph being built \('outer/call_body'\) nor one enclosing it "
                          r"\(declared at .*test_subgraph.py:\d+\)"):  # fmt: skip
        trace(lambda h: h * v, [x], op="call_body")


def test_a_body_must_return_nodes():
    g, x, w = outer_graph()
    with g:
        with pytest.raises(GraphStructureError, match=r"^call_body: the body's output 1 must be a graph node, got "
                           r"float 2.0 \(declared at .*test_subgraph.py:\d+\)"):  # fmt: skip
            trace(lambda h: (h, 2.0), [x], op="call_body")
        with pytest.raises(GraphStructureError, match=r"^call_body: the body must return a node or a tuple/list "
                           r"of nodes, got dict"):  # fmt: skip
            trace(lambda h: {"h": h}, [x], op="call_body")


def test_a_traced_body_takes_no_new_nodes_and_declares_no_parameters():
    g, x, w = outer_graph()
    with g:
        body, _ = trace(lambda h: h * 2.0, [x])
        with pytest.raises(GraphStructureError, match=r"^exp: graph 'outer/body' is a traced body and takes no "
                           r"new nodes"):  # fmt: skip
            gc.exp(body.outputs[0])
        with pytest.raises(GraphStructureError, match=r"body 'outer/body' declares parameters \(v\); declare them "
                           r"outside the body"):  # fmt: skip
            trace(lambda h: h * gc.ir.current_graph().param("v", (2, 3)), [x])


def test_trace_needs_a_graph_and_well_formed_types():
    with pytest.raises(GraphStructureError, match=r"^call_body: no graph to trace the body in"):
        trace(lambda h: h, [((2,), "float32")], op="call_body")
    g, x, w = outer_graph()
    with g, pytest.raises(GraphStructureError, match=r"^call_body: body input 0 must be a node or a \(shape, dtype\) "
                          r"pair, got 3"):  # fmt: skip
        trace(lambda h: h, [3], op="call_body")


# -- inlining a body ---------------------------------------------------------------------------
def test_inline_recomputes_a_body_from_new_inputs():
    from graphc.ops.bodies import inline

    g, x, w = outer_graph()
    with g:
        body, captures = trace(lambda h: (rnn_cell(w)(h), h * 2.0), [x])
        a, b = inline(body, [x * 3.0, w])
        g.output("a", a)
        g.output("b", b)
    assert a.graph is g and a.op == "tanh" and b.op == "mul"
    xv = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    out = gc.run(g, {"x": xv})
    want = run_body(body, [xv * 3.0, g.values["w"]])
    np.testing.assert_allclose(out["a"], want[0], rtol=1e-6)
    np.testing.assert_allclose(out["b"], want[1], rtol=1e-6)


def test_inline_inside_a_trace_and_differentiated_there():
    """What a scan's gradient rule does: a new body holding one step's vector-Jacobian product."""
    from graphc.ops.bodies import inline

    g, x, w = outer_graph()
    with g:
        step, _ = trace(rnn_cell(w), [x])

        def vjp(h, ct):
            (out,) = inline(step, [h, w])
            return gc.grad(out, h, cotangent=ct)

        back, captures = trace(vjp, [x, x], names=["h", "ct"])
    assert captures == [w] and all(n.graph is back.graph for n in back.nodes)
    rng = np.random.default_rng(1)
    h, ct = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((2, 3)).astype(np.float32)
    wv = g.values["w"]
    t = np.tanh(h @ wv + 1.0)
    np.testing.assert_allclose(run_body(back, [h, ct, wv])[0], (ct * (1 - t * t)) @ wv.T, rtol=1e-5, atol=1e-6)


def test_inline_refuses_inputs_of_other_types():
    from graphc.ops.bodies import inline

    g, x, w = outer_graph()
    with g:
        body, _ = trace(rnn_cell(w), [x])
        with pytest.raises(GraphStructureError, match=r"^inline: body 'outer/body' takes 2 inputs, got 1"):
            inline(body, [x])
        with pytest.raises(GraphStructureError, match=r"^inline: input 1 \(w\) of body 'outer/body' is f32\[3,3\], "
                           r"got f32\[2,3\]"):  # fmt: skip
            inline(body, [x, x])


def test_body_nodes_take_the_callers_scope():
    g, x, w = outer_graph()
    with g, g.scope("rnn"):
        body, _ = trace(lambda h: gc.tanh(h @ w), [x], names=["h"])
    assert {n.scope for n in body.nodes} == {"rnn"}
    assert body.text().splitlines()[1] == "  %2: f32[2,3] = matmul(h, w)".ljust(64) + " # rnn"
