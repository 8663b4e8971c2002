"""pow's gradient is 0 wherever the exponent is 0, also at 0 ** 0 (as in PyTorch; the rule
b * a ** (b - 1) gave 0 * inf = NaN there), on both backends and to second order; elsewhere it
matches finite differences."""

import numpy as np
import pytest
from gradcheck import check_grad, check_second_order

import graphc as gc

BACKENDS = ["reference", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_exponent_gradient_is_zero_at_zero(backend):
    with gc.Graph("p0") as g:
        x = g.input("x", (4,), "float64")
        b = g.input("b", (4,), "float64")
        gx_const = gc.grad(gc.sum(x**0.0), x)  # the reproduction: NaN at x = 0 before
        f = gc.sum(x**b)
        gx, gb = gc.grad(f, [x, b])
        hx = gc.grad(gc.sum(gx), x)  # second order: d2/dx2 sum(x ** b)
    xv = np.array([0.0, 0.0, 2.0, 0.5])
    bv = np.array([0.0, 2.0, 0.0, 3.0])
    got = gc.compile(g, backend, outputs=[gx_const, gx, gb, hx])(x=xv, b=bv)
    np.testing.assert_array_equal(got[0], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(got[1], [0.0, 0.0, 0.0, 3 * 0.25], rtol=1e-12)  # b * x ** (b - 1)
    np.testing.assert_allclose(got[2], [0.0, 0.0, np.log(2.0), 0.125 * np.log(0.5)], rtol=1e-12)
    np.testing.assert_allclose(got[3], [0.0, 2.0, 0.0, 6 * 0.5], rtol=1e-12)  # b (b - 1) x ** (b - 2)
    assert all(np.isfinite(v).all() for v in got)


def test_gradients_match_finite_differences_where_defined():
    xv = np.array([[0.7, 1.3, 2.1], [0.4, 1.9, 0.9]])
    bv = np.array([[0.0, 1.5, -0.5], [2.0, 0.0, 3.0]])  # zeros among other exponents
    check_grad(lambda x, b: x**b, {"x": xv, "b": bv})
    check_grad(lambda x: x**0.0 + x**2.5, {"x": xv})  # a constant exponent, zero and not
    check_grad(lambda x: gc.constant(np.array([0.0, 1.0, 2.0])) ** x, {"x": np.array([0.5, 1.5, 2.5])}, wrt=["x"])
    check_second_order(lambda x, b: x**b, {"x": xv, "b": bv}, wrt="x")
    check_second_order(lambda x, b: x**b, {"x": xv, "b": bv}, wrt="b")


def test_a_nonzero_constant_exponent_keeps_the_plain_rule():
    with gc.Graph("sq") as g:
        x = g.input("x", (3,))
        gx = gc.grad(gc.sum(x**2.0), x)
    ops = {n.op for n in g.live_nodes([gx])}
    assert "where" not in ops and "equal" not in ops  # nothing to guard: the exponent is never 0
