"""expand_dims, squeeze, swapaxes, permute, ones_like and sum_to against NumPy on both backends,
their gradients against finite differences, and their declaration errors."""

import numpy as np
import pytest
from gradcheck import check_grad

import graphc as gc
from graphc.errors import AttributeValueError, DTypeError, ShapeError

BACKENDS = ["reference", "numba"]
X = np.arange(24, dtype=np.float32).reshape(2, 1, 3, 4) - 11.5  # distinct values: a wrong order shows
LINE = r" \(declared at .*test_shape_ops.py:\d+\)$"


def _run(backend, build, x=X, shape=None):
    """build(x) compiled for backend, on an input of x's shape (or `shape`, symbolic dims allowed)."""
    with gc.Graph("shape") as g:
        node = g.input("x", x.shape if shape is None else shape, str(x.dtype))
        out = build(node)
    return gc.compile(g, backend, outputs=[out])(x=x)[0], out


def _declared(shape=(2, 1, 3, 4), dtype="float32"):
    with gc.Graph("decl") as g:
        return g.input("x", shape, dtype)


# -- expand_dims ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [0, 2, 4, -1, -5])
def test_expand_dims_matches_numpy(backend, axis):
    got, node = _run(backend, lambda x: gc.expand_dims(x, axis))
    expected = np.expand_dims(X, axis)
    assert node.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_expand_dims_gradient_and_errors():
    check_grad(lambda x: gc.expand_dims(x, 1) * 3.0, {"x": np.random.default_rng(0).standard_normal((2, 3))})
    x = _declared()
    with pytest.raises(AttributeValueError, match=r"^expand_dims: axis 5 is out of range for rank 5 "
                                                  r"\(input f32\[2,1,3,4\]\)" + LINE):  # fmt: skip
        gc.expand_dims(x, 5)
    with pytest.raises(AttributeValueError, match=r"^expand_dims: axis must be an int, got 1\.5"):
        gc.expand_dims(x, 1.5)


# -- squeeze ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [None, 1, -3, (1,)])
def test_squeeze_matches_numpy(backend, axis):
    got, node = _run(backend, lambda x: gc.squeeze(x, axis))
    expected = np.squeeze(X, axis)
    assert node.shape == expected.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_squeeze_several_axes_and_symbolic_dims(backend):
    x = np.arange(6, dtype=np.float64).reshape(1, 2, 1, 3, 1)
    got, node = _run(backend, lambda x: gc.squeeze(x, (0, -1)), x, shape=(1, "batch", 1, 3, 1))
    assert node.shape == ("batch", 1, 3)
    np.testing.assert_array_equal(got, np.squeeze(x, (0, -1)))
    got, node = _run(backend, gc.squeeze, x, shape=(1, "batch", 1, 3, 1))
    assert node.shape == ("batch", 3)  # a symbolic dim is never squeezed by axis=None
    np.testing.assert_array_equal(got, x.reshape(2, 3))


def test_squeeze_gradient_and_errors():
    check_grad(lambda x: gc.squeeze(x) * gc.squeeze(x), {"x": np.random.default_rng(1).standard_normal((3, 1, 2))})
    x = _declared()
    with pytest.raises(ShapeError, match=r"^squeeze: axis 0 of f32\[2,1,3,4\] has size 2, not 1" + LINE):
        gc.squeeze(x, 0)
    with pytest.raises(ShapeError, match=r"^squeeze: axis 0 of f32\[batch,1\] has size batch, not 1" + LINE):
        gc.squeeze(_declared(("batch", 1)), 0)
    with pytest.raises(AttributeValueError, match=r"^squeeze: axis 4 is out of range for rank 4 "
                                                  r"\(input f32\[2,1,3,4\]\)" + LINE):  # fmt: skip
        gc.squeeze(x, 4)
    with pytest.raises(AttributeValueError, match=r"^squeeze: repeated axis in \(1, -3\)"):
        gc.squeeze(x, (1, -3))
    with pytest.raises(AttributeValueError, match=r"^squeeze: axis must be None, an int or a tuple of ints, got 1\.0"):
        gc.squeeze(x, 1.0)


# -- swapaxes and permute ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axes", [(), (0, 3), (1, -1), (2, 2)], ids=["default", "0-3", "1-last", "same"])
def test_swapaxes_matches_numpy(backend, axes):
    got, node = _run(backend, lambda x: gc.swapaxes(x, *axes))
    expected = np.swapaxes(X, *(axes or (-1, -2)))
    assert node.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("perm", [(3, 0, 2, 1), (0, 1, 2, 3), (-1, -2, 0, 1), (1, 0, 3, 2)])
def test_permute_matches_numpy(backend, perm):
    got, node = _run(backend, lambda x: gc.permute(x, perm))
    expected = np.transpose(X, perm)
    assert node.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    assert gc.permute is gc.transpose


def test_swapaxes_and_permute_gradients():
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    check_grad(lambda x: gc.swapaxes(x, 0, 2), {"x": x})
    check_grad(lambda x: gc.permute(x, (1, 2, 0)) * gc.permute(x, (1, 2, 0)), {"x": x})
    # the gradient of a permutation is the inverse permutation, not the same one
    with gc.Graph("inverse") as g:
        xi = g.input("x", (2, 3, 4), "float64")
        weights = np.arange(24.0).reshape(3, 4, 2)
        gx = gc.grad(gc.sum(gc.permute(xi, (1, 2, 0)) * gc.constant(weights, "float64")), xi)
    np.testing.assert_array_equal(gc.run(g, {"x": x}, outputs=gx), np.transpose(weights, (2, 0, 1)))


def test_swapaxes_and_permute_errors():
    x = _declared()
    with pytest.raises(AttributeValueError, match=r"^swapaxes: axis 4 is out of range for rank 4 "
                                                  r"\(input f32\[2,1,3,4\]\)" + LINE):  # fmt: skip
        gc.swapaxes(x, 0, 4)
    with pytest.raises(ShapeError, match=r"^transpose\(f32\[2,1,3,4\]\): perm \(0, 0, 1, 2\) is not a permutation "
                                         r"of the 4 axes" + LINE):  # fmt: skip
        gc.permute(x, (0, 0, 1, 2))
    with pytest.raises(ShapeError, match=r"^transpose\(f32\[2,1,3,4\]\): perm \(0, 1\) is not a permutation"):
        gc.permute(x, (0, 1))
    # an axis past the rank is refused, not wrapped round (5 % 4 = 1 made (0, 2, 3, 5) a valid perm)
    with pytest.raises(AttributeValueError, match=r"^transpose: axis 5 is out of range for rank 4 "
                                                  r"\(input f32\[2,1,3,4\]\)" + LINE):  # fmt: skip
        gc.permute(x, (0, 2, 3, 5))
    with pytest.raises(AttributeValueError, match=r"^transpose: axis must be an int, got 1\.5"):
        gc.permute(x, (0, 1.5, 2, 3))
    with pytest.raises(AttributeValueError, match=r"^swapaxes: axis must be an int, got 1\.0"):
        gc.swapaxes(x, 1.0, 2)


# -- ones_like --------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [None, "float64", "int32", "int64", "bool"])
def test_ones_like_matches_numpy(backend, dtype):
    got, node = _run(backend, lambda x: gc.ones_like(x, dtype))
    expected = np.ones_like(X, dtype=dtype)
    assert node.dtype == str(expected.dtype) and node.shape == X.shape
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ones_like_of_a_symbolic_shape_reads_the_run_time_shape(backend):
    x = np.zeros((5, 3), np.float32)
    got, node = _run(backend, lambda x: gc.ones_like(x, "int64") + gc.ones_like(x, "int64"), x, ("batch", 3))
    assert node.shape == ("batch", 3)
    np.testing.assert_array_equal(got, np.full((5, 3), 2, np.int64))


def test_ones_like_has_no_gradient_and_checks_its_dtype():
    check_grad(lambda x: gc.ones_like(x) * x * x, {"x": np.random.default_rng(3).standard_normal((2, 3))})
    with gc.Graph("zero") as g:
        x = g.input("x", (2, 3), "float64")
        gx = gc.grad(gc.sum(gc.ones_like(x)), x)
    np.testing.assert_array_equal(gc.run(g, {"x": np.ones((2, 3))}, outputs=gx), np.zeros((2, 3)))
    with pytest.raises(DTypeError, match=r"unsupported dtype 'float13'; expected one of float32, float64, int32, "
                                         r"int64, bool"):  # fmt: skip
        gc.ones_like(_declared(), "float13")
    with pytest.raises(gc.GraphcError, match=r"^full_like: input 0 must be a graph node, got ndarray array"):
        gc.ones_like(np.ones(2))


# -- sum_to -----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "shape, axes",
    [((2, 1, 3, 4), ()), ((4,), (0, 1, 2)), ((3, 4), (0, 1)), ((1, 4), (0, 1, 2)), ((2, 1, 1, 4), (2,)),
     ((1, 1, 3, 1), (0, 3)), ((), (0, 1, 2, 3))],
)  # fmt: skip
def test_sum_to_matches_numpy(backend, shape, axes):
    got, node = _run(backend, lambda x: gc.sum_to(x, shape))
    expected = np.sum(X, axis=axes, keepdims=True).reshape(shape)
    assert node.shape == shape
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # sum_to undoes broadcasting: broadcasting the result back gives X's shape again
    np.testing.assert_array_equal(np.broadcast_to(expected, X.shape).shape, X.shape)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sum_to_with_a_symbolic_batch(backend):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    got, node = _run(backend, lambda x: gc.sum_to(x, (1, 3)), x, ("batch", 3))
    assert node.shape == (1, 3)
    np.testing.assert_array_equal(got, x.sum(axis=0, keepdims=True))


def test_sum_to_gradient_and_errors():
    x = np.random.default_rng(4).standard_normal((2, 3, 4))
    check_grad(lambda x: gc.sum_to(x * x, (3, 1)), {"x": x})
    check_grad(lambda x: gc.sum_to(x, (1, 3, 4)), {"x": x})
    x = _declared((2, 3, 4))
    with pytest.raises(ShapeError, match=r"^sum_to: cannot sum f32\[2,3,4\] down to \[5,4\], which does not broadcast "
                                         r"to \[2,3,4\]" + LINE):  # fmt: skip
        gc.sum_to(x, (5, 4))
    # same size, other order: it used to be reshaped silently into a wrong result
    with pytest.raises(ShapeError, match=r"^sum_to: cannot sum f32\[2,3,4\] down to \[4,3,2\]"):
        gc.sum_to(x, (4, 3, 2))
    with pytest.raises(ShapeError, match=r"^sum_to: cannot sum f32\[2,3,4\] down to \[1,2,3,4\]"):
        gc.sum_to(x, (1, 2, 3, 4))
