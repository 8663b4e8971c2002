"""Indexing ops: values vs NumPy, gradients vs finite differences, errors that name the line."""

import inspect

import numpy as np
import pytest
from gradcheck import check_grad, check_second_order

import graphc as gc
from graphc.errors import IndexRangeError
from graphc.ops.registry import Kind, get

rng = np.random.default_rng(0)
X = rng.standard_normal((4, 5, 6))
IDX = np.array([[0, 3, 3], [-1, 1, 0]])  # repeated and negative indices

# (name, index applied to a graph node, and to the NumPy array)
INDEXES = {
    "basic": lambda x, i: x[1:, ::2],
    "negative": lambda x, i: x[-1, -3:, -2],
    "neg_step": lambda x, i: x[::-1, 3:0:-2],
    "ellipsis": lambda x, i: x[..., -1],
    "newaxis": lambda x, i: x[None, 1, :, None, -2:],
    "empty": lambda x, i: x[2:2],
    "past_end": lambda x, i: x[1:100, -100:2],
    "array0": lambda x, i: x[i],
    "array1": lambda x, i: x[:, i],
    "array_with_int_adjacent": lambda x, i: x[1, i],
    "array_with_int_apart": lambda x, i: x[0, :, i],
    "array_apart_by_newaxis": lambda x, i: x[i, None, 0],
    "list": lambda x, i: x[[0, 2, -1], 1:3],
}


def _run(build, **arrays):
    with gc.Graph() as g:
        nodes = {k: g.input(k, v.shape, str(v.dtype)) for k, v in arrays.items()}
        out = build(**nodes)
    return gc.run(g, arrays, outputs=out)


@pytest.mark.parametrize("name", INDEXES)
def test_getitem_matches_numpy(name):
    got = _run(lambda x, i: INDEXES[name](x, i), x=X, i=IDX)
    want = INDEXES[name](X, IDX)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", [n for n in INDEXES if n != "empty"])
def test_getitem_gradients(name):
    x = rng.standard_normal((3, 4, 5))
    i = np.array([[0, 2, 2], [-1, 1, 0]])
    check_grad(lambda x, i: INDEXES[name](x, i), {"x": x, "i": i}, wrt=["x"])


def test_slice_function_axes_and_steps():
    got = _run(lambda x: gc.slice(x, [-1, 1], [None, -1], [-1, 2], axes=[2, 0]), x=X)
    np.testing.assert_array_equal(got, X[1:-1:2, :, ::-1])
    check_grad(lambda x: gc.slice(x, [1], [None], [2], axes=[-1]), {"x": X[:2]})


def test_second_order_slice_and_take():
    x = rng.standard_normal((5, 4))
    check_second_order(lambda x: gc.tanh(x[1:, ::2]) * x[:-1, 1::2], {"x": x}, "x")
    check_second_order(lambda x: gc.tanh(gc.take(x, [0, 3, 3, -1]) * 2.0), {"x": x}, "x")
    check_second_order(lambda x: gc.tanh(gc.take(x, np.array([[1, 0], [1, 2]]), axis=1)), {"x": x}, "x")
    check_second_order(lambda x: gc.exp(gc.pad(x, [(1, 0), (0, 2)]) * 0.5), {"x": x}, "x")


def test_backward_uses_scatter_ops_with_their_own_vjp():
    with gc.Graph() as g:
        x = g.input("x", (5, 4), "float64")
        y = gc.sum(gc.tanh(gc.take(x, [1, 1, 4]))) + gc.sum(gc.tanh(x[1:, ::2]))
    gx = gc.grad(y, x)
    ops = {n.op for n in g.live_nodes([gx])}
    assert {"take_grad", "slice_grad"} <= ops
    assert get("take_grad").kind is Kind.OPAQUE and get("slice").kind is Kind.INJECTIVE


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_values_and_gradient_accumulate_repeats(axis):
    x = rng.standard_normal((4, 5, 3))
    idx = np.array([[0, 2, 2, 2], [-1, 0, 1, 2]], dtype=np.int32)
    got = _run(lambda x, i: gc.take(x, i, axis=axis), x=x, i=idx)
    np.testing.assert_array_equal(got, np.take(x, idx, axis=axis))
    grads = check_grad(lambda x, i: gc.gather(x, i, axis=axis) ** 2, {"x": x, "i": idx}, wrt=["x"])
    # index 2 appears three times in row 0, so its gradient sums three contributions
    assert np.abs(grads[0]).sum() > 0


def test_embedding_lookup_with_symbolic_batch():
    table = rng.standard_normal((10, 3))
    with gc.Graph() as g:
        ids = g.input("ids", ("batch", 2), "int64")
        emb = g.param("emb", (10, 3), "zeros", "float64")
        loss = gc.sum(gc.take(emb, ids) ** 2)
    g.values["emb"][...] = table
    gemb = gc.grad(loss, emb)
    for batch in (1, 4):
        ids_v = rng.integers(0, 10, (batch, 2))
        lv, gv = gc.run(g, {"ids": ids_v}, outputs=[loss, gemb])
        want = np.zeros_like(table)
        np.add.at(want, ids_v, 2 * table[ids_v])
        np.testing.assert_allclose(lv, (table[ids_v] ** 2).sum())
        np.testing.assert_allclose(gv, want)


def test_take_out_of_range_is_a_run_time_error_naming_index_and_line():
    with gc.Graph() as g:
        x = g.input("x", (4, 3), "float64")
        i = g.input("i", (3,), "int64")
        line = inspect.currentframe().f_lineno + 1
        y = gc.take(x, i)
    assert gc.run(g, {"x": X[0, :4, :3], "i": np.array([0, -4, 3])}, outputs=y).shape == (3, 3)
    with pytest.raises(IndexRangeError, match=rf"take: index 7 at position \(1,\) .*\[-4, 4\).*indexing.py:{line}"):
        gc.run(g, {"x": np.zeros((4, 3)), "i": np.array([0, 7, 1])}, outputs=y)
    with pytest.raises(IndexRangeError, match="take: index -5"):
        gc.run(g, {"x": np.zeros((4, 3)), "i": np.array([-5, 0, 1])}, outputs=y)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_split_stack(axis):
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    sizes = [1, 1] if axis == 0 else [2, 0, 1]
    got = _run(lambda a, b, c: [gc.concat([a, b, c], axis), gc.stack([a, b, c], axis), *gc.split(a, sizes, axis)],
               a=a, b=b, c=c)  # fmt: skip
    np.testing.assert_array_equal(got[0], np.concatenate([a, b, c], axis))
    np.testing.assert_array_equal(got[1], np.stack([a, b, c], axis))
    for part, want in zip(got[2:], np.split(a, np.cumsum(sizes)[:-1], axis)):
        np.testing.assert_array_equal(part, want)
    check_grad(lambda a, b, c: gc.concat([a * b, c, a], axis), {"a": a, "b": b, "c": c})
    check_grad(lambda a, b, c: gc.stack([a, b * c], axis), {"a": a, "b": b, "c": c})
    check_grad(lambda a: gc.concat([p * (k + 1.0) for k, p in enumerate(gc.split(a, sizes, axis))], axis), {"a": a})


def test_split_equal_sections_and_concat_symbolic_batch():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 6), "float64")
        parts = gc.split(x, 3, axis=1)
        y = gc.concat([parts[2], parts[0]], axis=1)
    xv = rng.standard_normal((5, 6))
    np.testing.assert_array_equal(gc.run(g, {"x": xv}, outputs=y), np.concatenate([xv[:, 4:], xv[:, :2]], 1))
    gx = gc.grad(gc.sum(y * y), x)
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=gx), 2 * xv * [1, 1, 0, 0, 1, 1])


@pytest.mark.parametrize("pads", [1, (2, 0), [(0, 1), (2, 3)]])
def test_pad_values_and_gradient(pads):
    x = rng.standard_normal((2, 3))
    want = np.pad(x, pads if not isinstance(pads, tuple) else [pads] * 2, constant_values=-1.5)
    np.testing.assert_array_equal(_run(lambda x: gc.pad(x, pads, value=-1.5), x=x), want)
    check_grad(lambda x: gc.tanh(gc.pad(x, pads, value=0.5)), {"x": x})


def test_one_hot_values_axis_and_range_error():
    labels = np.array([[0, 4], [2, 1]], dtype=np.int32)
    got = _run(lambda y: [gc.one_hot(y, 5), gc.one_hot(y, 5, "float64", axis=0)], y=labels)
    np.testing.assert_array_equal(got[0], np.eye(5, dtype=np.float32)[labels])
    assert got[0].dtype == np.float32 and got[1].dtype == np.float64
    np.testing.assert_array_equal(got[1], np.moveaxis(np.eye(5)[labels], -1, 0))
    with gc.Graph() as g:
        y = g.input("y", (3,), "int64")
        line = inspect.currentframe().f_lineno + 1
        h = gc.one_hot(y, 4)
    assert not get("one_hot").differentiable
    with pytest.raises(IndexRangeError, match=rf"one_hot: label 4 at position \(2,\) .*\[0, 4\).*_indexing.py:{line}"):
        gc.run(g, {"y": np.array([0, 3, 4])}, outputs=h)
    with pytest.raises(IndexRangeError, match="one_hot: label -1"):
        gc.run(g, {"y": np.array([0, -1, 1])}, outputs=h)


def test_symbolic_dims_slice_whole_and_gradient():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 5), "float64")
        y = x[:, 1::2] * x[:, :2]
        gx = gc.grad(gc.sum(y), x)
    for n in (1, 3):
        xv = rng.standard_normal((n, 5))
        yv, gv = gc.run(g, {"x": xv}, outputs=[y, gx])
        np.testing.assert_array_equal(yv, xv[:, 1::2] * xv[:, :2])
        want = np.zeros_like(xv)
        want[:, 1::2] += xv[:, :2]
        want[:, :2] += xv[:, 1::2]
        np.testing.assert_allclose(gv, want)


ERRORS = [
    (lambda x, m: x[m], IndexRangeError, r"boolean-mask indexing of f64\[4,5\] is not supported"),
    (lambda x, m: x[np.array([True, False, True, True])], IndexRangeError, "boolean-mask"),
    (lambda x, m: x[4], IndexRangeError, r"index 4 is out of range for axis 0 of size 4"),
    (lambda x, m: x[:, -6], IndexRangeError, r"index -6 is out of range for axis 1 of size 5"),
    (lambda x, m: x[0, 0, 0], IndexRangeError, r"too many indices \(3\)"),
    (lambda x, m: x[..., 0, ...], IndexRangeError, "single ellipsis"),
    (lambda x, m: x[::0], gc.GraphcError, "step cannot be zero"),
    (lambda x, m: x[1.5], IndexRangeError, "unsupported index 1.5"),
    (lambda x, m: x[gc.cast(m, "float64")], gc.DTypeError, "index node must be int32 or int64"),
    (lambda x, m: gc.concat([x, x[:, :2].T], 0), gc.ShapeError, r"concat\(f64\[4,5\], f64\[2,4\]\): shapes must agree"),
    (lambda x, m: gc.split(x, 3, axis=1), gc.GraphcError, r"size 5\) does not split into 3"),
    (lambda x, m: gc.split(x, [2, 2], axis=1), gc.GraphcError, r"sizes \[2, 2\] must be non-negative ints sum"),
    (lambda x, m: gc.pad(x, [(1, -1), (0, 0)]), gc.ShapeError, r"negative padding \(1, -1\) on axis 0"),
    (lambda x, m: gc.pad(x, "a"), gc.GraphcError, "pads must be"),
    (lambda x, m: gc.take(x, m), gc.DTypeError, "indices must be int32 or int64, got bool"),
    (lambda x, m: gc.take(x, [0], axis=2), gc.GraphcError, "axis 2 is out of range"),
    (lambda x, m: gc.one_hot(x, 3), gc.DTypeError, "labels must be int32 or int64"),
    (lambda x, m: gc.one_hot(gc.cast(m, "int64"), 0), gc.GraphcError, "depth must be a positive int"),
]  # fmt: skip


@pytest.mark.parametrize("build,exc,msg", ERRORS)
def test_declaration_errors_name_op_values_and_line(build, exc, msg):
    with gc.Graph() as g:
        x = g.input("x", (4, 5), "float64")
        m = g.input("m", (4,), "bool")
        with pytest.raises(exc, match=msg) as info:
            build(x, m)
    assert "test_indexing.py:" in str(info.value)


def test_symbolic_dimension_errors():
    with gc.Graph() as g:
        x = g.input("x", ("batch", 5), "float64")
        line = inspect.currentframe().f_lineno + 2
        with pytest.raises(gc.ShapeError, match=rf"cannot slice symbolic dimension 'batch'.*test_indexing.py:{line}"):
            x[1:]
        with pytest.raises(gc.ShapeError, match="cannot index symbolic dimension 'batch'"):
            x[0]
        with pytest.raises(gc.ShapeError, match="cannot concatenate along symbolic dimension 'batch'"):
            gc.concat([x, x], 0)
        with pytest.raises(gc.ShapeError, match="cannot pad symbolic dimension 'batch'"):
            gc.pad(x, 1)
