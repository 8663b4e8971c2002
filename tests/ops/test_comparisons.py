"""Comparisons (less, less_equal, greater, greater_equal, equal, not_equal) against NumPy on both
backends: values, the bool dtype, broadcasting, NaN, integer inputs and Python scalars; they carry
no gradient; bad operands are declaration errors naming the op."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphStructureError, ShapeError

COMPARISONS = {
    "less": (gc.less, np.less),
    "less_equal": (gc.less_equal, np.less_equal),
    "greater": (gc.greater, np.greater),
    "greater_equal": (gc.greater_equal, np.greater_equal),
    "equal": (gc.equal, np.equal),
    "not_equal": (gc.not_equal, np.not_equal),
}
BACKENDS = ["reference", "numba"]

# values with ties, so that strict and non-strict comparisons differ, and NaN (every comparison
# with NaN is False except not_equal, which is True)
A = np.array([[0.0, 1.0, 2.0], [3.0, np.nan, -1.0]])
B_ROW = np.array([0.0, 2.0, np.nan])  # (3,): broadcasts over A's rows
B_COL = np.array([[1.0], [3.0]])  # (2, 1): broadcasts over A's columns


def _evaluate(backend, build, feeds):
    """(values, nodes) of build(**inputs) compiled for backend; one or a list of outputs."""
    with gc.Graph("cmp") as g:
        nodes = {k: g.input(k, v.shape, str(v.dtype)) for k, v in feeds.items()}
        out = build(**nodes)
    outs = out if isinstance(out, list) else [out]
    got = gc.compile(g, backend, outputs=outs)(**feeds)
    return (got, outs) if isinstance(out, list) else (got[0], out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", COMPARISONS)
@pytest.mark.parametrize("b", [A[::-1], B_ROW, B_COL], ids=["same_shape", "row", "column"])
def test_float_comparisons_match_numpy(backend, name, b):
    op, ref = COMPARISONS[name]
    got, node = _evaluate(backend, lambda a, b: op(a, b), {"a": A, "b": b})
    expected = ref(A, b)
    assert node.dtype == "bool" and node.shape == expected.shape
    assert got.dtype == np.bool_ and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", COMPARISONS)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_comparisons_match_numpy(backend, name, dtype):
    op, ref = COMPARISONS[name]
    a = np.array([[-2, 0, 5], [7, 7, -9]], dtype)
    b = np.array([[-2], [7]], dtype)
    got, _ = _evaluate(backend, lambda a, b: op(a, b), {"a": a, "b": b})
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, ref(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", COMPARISONS)
def test_a_python_scalar_on_either_side(backend, name):
    op, ref = COMPARISONS[name]
    x = np.array([[0.5, 1.0], [1.5, np.nan]], np.float32)
    got, _ = _evaluate(backend, lambda x: [op(x, 1.0), op(1.0, x)], {"x": x})
    np.testing.assert_array_equal(got[0], ref(x, np.float32(1.0)))
    np.testing.assert_array_equal(got[1], ref(np.float32(1.0), x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_operators_are_the_comparison_ops(backend):
    x = np.array([0.0, 1.0, 2.0], np.float32)
    y = np.array([1.0, 1.0, 1.0], np.float32)
    got, _ = _evaluate(backend, lambda x, y: [x < y, x <= y, x > y, x >= y], {"x": x, "y": y})
    for g, expected in zip(got, [x < y, x <= y, x > y, x >= y]):
        np.testing.assert_array_equal(g, expected)
    with gc.Graph("ops") as g:
        a, b = g.input("a", (3,)), g.input("b", (3,))
    assert [(a < b).op, (a <= b).op, (a > b).op, (a >= b).op] == ["less", "less_equal", "greater", "greater_equal"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_dtypes_are_promoted_before_comparing(backend):
    # int32 3 against float32 3.5: promoted to float32, so 3 < 3.5 (truncating 3.5 to 3 would say no)
    i = np.array([3, 4], np.int32)
    f = np.array([3.5, 3.5], np.float32)
    got, node = _evaluate(backend, lambda i, f: gc.less(i, f), {"i": i, "f": f})
    assert node.inputs[0].op == "cast" and node.inputs[0].dtype == "float32"
    np.testing.assert_array_equal(got, [True, False])


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons_carry_no_gradient(name):
    op, ref = COMPARISONS[name]
    x0 = np.array([0.5, 1.0, 2.0])
    with gc.Graph("mask") as g:
        x = g.input("x", (3,), "float64")
        mask = op(x, 1.0)
        loss = gc.sum(gc.cast(mask, "float64") * x)  # d/dx = the mask: the comparison adds nothing
    np.testing.assert_array_equal(gc.run(g, {"x": x0}, outputs=gc.grad(loss, x)), ref(x0, 1.0).astype(float))
    only_mask = gc.grad(gc.sum(gc.cast(mask, "float64")), x)  # zeros, not an error
    np.testing.assert_array_equal(gc.run(g, {"x": x0}, outputs=only_mask), [0.0, 0.0, 0.0])


@pytest.mark.parametrize("name", COMPARISONS)
def test_bad_operands_are_declaration_errors(name):
    op, _ = COMPARISONS[name]
    with gc.Graph("bad") as g:
        a = g.input("a", (2, 3))
        b = g.input("b", (4,))
    with pytest.raises(ShapeError, match=rf"^{name}\(f32\[2,3\], f32\[4\]\): cannot broadcast \[2,3\] with \[4\] "
                                         r"\(declared at .*test_comparisons.py:\d+\)$"):  # fmt: skip
        op(a, b)
    with pytest.raises(DTypeError, match=rf"^{name}: needs at least one graph node, got \(1\.0, 2\.0\)"):
        op(1.0, 2.0)
    with gc.Graph("other") as h:
        c = h.input("c", (2, 3))
    with pytest.raises(GraphStructureError, match=rf"^{name}: inputs belong to different graphs"):
        op(a, c)
