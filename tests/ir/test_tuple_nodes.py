"""Many-output nodes: a TupleNode read through tuple_get; split is one; autodiff per output."""

import numpy as np
import pytest
from gradcheck import check_grad

import graphc as gc
from graphc.errors import GradientError, GraphStructureError, IndexRangeError
from graphc.ir.node import TupleNode


def split_graph():
    with gc.Graph("sp") as g:
        x = g.input("x", ("batch", 6), "float64")
        parts = gc.split(x, [1, 2, 3], axis=1)
    return g, x, parts


def test_split_is_one_node_with_an_output_per_part():
    g, x, parts = split_graph()
    (t,) = {p.inputs[0] for p in parts}
    assert isinstance(t, TupleNode) and t.is_tuple and t.op == "split"
    assert t.types == ((("batch", 1), "float64"), (("batch", 2), "float64"), (("batch", 3), "float64"))
    assert t.type_str == "(f64[batch,1], f64[batch,2], f64[batch,3])"
    assert [p.op for p in parts] == ["tuple_get"] * 3 and [p.attrs["index"] for p in parts] == [0, 1, 2]
    assert [p.shape for p in parts] == [("batch", 1), ("batch", 2), ("batch", 3)] and not parts[0].is_tuple
    assert parts[0].types == ((("batch", 1), "float64"),)
    assert [n.op for n in g.nodes].count("split") == 1
    g.output("c", parts[2])
    assert g.text() == "\n".join([
        "graph sp(x: f64[batch,6]) {",
        "  %1: (f64[batch,1], f64[batch,2], f64[batch,3]) = split(x, axis=1, sizes=(1, 2, 3))",
        "  %4: f64[batch,3] = tuple_get(%1, index=2)",
        "  return c=%4",
        "}",
    ])  # fmt: skip


def test_reference_holds_a_tuple_and_both_backends_agree():
    g, x, parts = split_graph()
    g.output("y", gc.concat([parts[2], parts[0] * 2.0], axis=1))
    xv = np.arange(12.0).reshape(2, 6)
    want = np.concatenate([xv[:, 3:], xv[:, :1] * 2], axis=1)
    np.testing.assert_array_equal(gc.run(g, {"x": xv})["y"], want)
    np.testing.assert_array_equal(gc.compile(g, "numba")({"x": xv})["y"], want)
    from graphc.backends.reference import ReferenceExecutable

    vals = ReferenceExecutable(g).execute({"x": xv}, {"batch": 2})
    t = parts[0].inputs[0]
    assert isinstance(vals[t.id], tuple) and [v.shape for v in vals[t.id]] == [(2, 1), (2, 2), (2, 3)]


def test_gradient_concatenates_the_output_cotangents_with_zeros_where_none():
    g, x, parts = split_graph()
    y = gc.sum(parts[0] * 3.0) + gc.sum(parts[2] ** 2) + gc.sum(parts[2])  # parts[1] unused
    gx = gc.grad(y, x)
    t = parts[0].inputs[0]
    concat = [n for n in g.live_nodes([gx]) if n.op == "concat"]
    assert len(concat) == 1 and concat[0].is_backward and concat[0].grad_of == t.label
    xv = np.arange(12.0).reshape(2, 6)
    want = np.concatenate([np.full((2, 1), 3.0), np.zeros((2, 2)), 2 * xv[:, 3:] + 1], axis=1)
    np.testing.assert_array_equal(gc.run(g, {"x": xv}, outputs=gx), want)
    np.testing.assert_array_equal(gc.compile(g, "numba", outputs=gx)({"x": xv}), want)


def test_split_gradients_match_finite_differences_to_second_order():
    a = np.random.default_rng(0).standard_normal((3, 5))
    check_grad(lambda a: gc.concat([p * (k + 1.0) for k, p in enumerate(gc.split(a, [2, 0, 3], 1))], 1), {"a": a})
    check_grad(lambda a: gc.sum(gc.tanh(gc.split(a, 5, 1)[3])) * gc.split(a, 5, 1)[0], {"a": a})
    with gc.Graph() as g:  # the gradient of the gradient goes through split again
        x = g.input("x", (4,), "float64")
        p, q = gc.split(x, 2)
        y = gc.sum(p**3) + gc.sum(p * q)
        gx = gc.grad(y, x)
        hv = gc.grad(gc.sum(gx * gc.constant(np.array([1.0, 0, 0, 1]))), x)
    xv = np.array([1.0, 2.0, 3.0, 4.0])
    # y = p0^3 + p1^3 + p0 q0 + p1 q1 over x = [p0, p1, q0, q1]: H @ [1, 0, 0, 1] = [6 p0, 1, 1, 0]
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=hv), [6 * 1.0, 1.0, 1.0, 0.0])


def test_vjp_receives_one_cotangent_or_none_per_output():
    seen = []
    from graphc.ops import registry

    split_def = registry.get("split")
    original = split_def.vjp

    def spy(n, g, needs):
        seen.append([c is not None for c in g])
        return original(n, g, needs)

    split_def.vjp = spy
    try:
        g, x, parts = split_graph()
        gc.grad(gc.sum(parts[0]) + gc.sum(parts[2] * parts[2]), x)
        assert seen == [[True, False, True]]
        gc.grad(gc.sum(parts[1]), x)
        assert seen[-1] == [False, True, False]
    finally:
        split_def.vjp = original


def test_misusing_a_tuple_node_is_an_error():
    g, x, parts = split_graph()
    t = parts[0].inputs[0]
    with pytest.raises(GraphStructureError, match=r"^split#1 \(split\) has 3 outputs, so no single shape; read one "
                       r"output with graphc.tuple_get\(node, index\)"):  # fmt: skip
        t.shape  # noqa: B018
    with pytest.raises(GraphStructureError, match=r"has 3 outputs, so no single dtype"):
        t.dtype  # noqa: B018
    with pytest.raises(GraphStructureError, match=r"^exp: input 0 \(split#1: \(f64\[batch,1\], f64\[batch,2\], "
                       r"f64\[batch,3\]\)\) has several outputs; read one with graphc.tuple_get\(node, index\) "
                       r"\(declared at .*test_tuple_nodes.py:\d+\)"):  # fmt: skip
        gc.exp(t)
    with pytest.raises(IndexRangeError, match=r"^tuple_get: index 3 is out of range for split#1's 3 outputs"):
        gc.tuple_get(t, 3)
    with pytest.raises(GraphStructureError, match=r"^tuple_get: x \(f64\[batch,6\]\) has one output, not a tuple"):
        gc.tuple_get(x, 0)
    with pytest.raises(GraphStructureError, match=r"^output 'bad': split#1 has 3 outputs; name one of them"):
        g.output("bad", t)
    with pytest.raises(GradientError, match=r"^grad: split#1 has several outputs"):
        gc.grad(gc.sum(parts[0]), t)


def test_graph_file_round_trip_of_a_tuple_node(tmp_path):
    g, x, parts = split_graph()
    g.output("y", gc.sum(parts[1] * parts[2][:, :2]))
    g.output("gx", gc.grad(g.outputs["y"], x))
    g.save(tmp_path / "g.json")
    h = gc.load_graph(tmp_path / "g.json")
    assert h.text() == g.text() and h.nodes[1].is_tuple and h.nodes[1].types == g.nodes[1].types
    xv = np.arange(12.0).reshape(2, 6)
    for k, v in gc.run(g, {"x": xv}).items():
        np.testing.assert_array_equal(gc.run(h, {"x": xv})[k], v)


def test_cse_merges_equal_splits_and_keeps_kernel_singletons():
    with gc.Graph() as g:
        x = g.input("x", (4, 6))
        a = gc.split(x, 2, axis=1)
        b = gc.split(x, 2, axis=1)
        g.output("y", a[0] * b[1] + 1.0)
    step = gc.compile(g, "numba")
    kinds = [(k.kind, [step.graph.nodes[i].op for i in k.node_ids]) for k in step.kernels]
    assert kinds.count(("opaque", ["split"])) == 1  # CSE made one split; fusion keeps it alone
    assert [ops for kind, ops in kinds if "tuple_get" in ops] == [["tuple_get"], ["tuple_get"]]
    xv = np.arange(24, dtype=np.float32).reshape(4, 6)
    np.testing.assert_array_equal(step({"x": xv})["y"], xv[:, :3] * xv[:, 3:] + 1)
