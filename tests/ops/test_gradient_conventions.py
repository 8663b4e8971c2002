"""The gradients at non-differentiable points that docs/autodiff.md documents ("Conventions at
non-differentiable points"), row by row, on both backends: if a rule changes, so must the doc."""

import numpy as np
import pytest

import graphc as gc

BACKENDS = ["reference", "numba"]


def _grads(backend, build, **arrays):
    """The gradients of sum(build(**inputs)) with respect to every input, compiled for backend."""
    with gc.Graph("conv") as g:
        nodes = [g.input(k, v.shape, "float64") for k, v in arrays.items()]
        loss = gc.sum(build(*nodes))
    return gc.compile(g, backend, outputs=gc.grad(loss, nodes))(**arrays)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maximum_and_minimum_ties_give_the_whole_gradient_to_the_first_operand(backend):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0])  # a tie, a > b, a < b
    np.testing.assert_array_equal(_grads(backend, gc.maximum, a=a, b=b), [[1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(_grads(backend, gc.minimum, a=a, b=b), [[1, 0, 1], [0, 1, 0]])
    # so maximum(x, 0) and relu differ at 0, and maximum(0, x) agrees with relu
    x = np.array([0.0, 1.0, -1.0])
    (g_max,) = _grads(backend, lambda x: gc.maximum(x, 0.0), x=x)
    (g_max0,) = _grads(backend, lambda x: gc.maximum(0.0, x), x=x)
    (g_relu,) = _grads(backend, gc.relu, x=x)
    np.testing.assert_array_equal(g_max, [1, 1, 0])
    np.testing.assert_array_equal(g_max0, g_relu)
    np.testing.assert_array_equal(g_relu, [0, 1, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduction_ties_share_and_pooling_ties_go_to_the_first(backend):
    (g,) = _grads(backend, lambda x: gc.max(x, axis=1), x=np.array([[2.0, 2.0, 1.0], [0.0, 3.0, 3.0]]))
    np.testing.assert_array_equal(g, [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    (g,) = _grads(backend, lambda x: gc.min(x, axis=0), x=np.array([1.0, 4.0, 1.0, 1.0]))
    np.testing.assert_allclose(g, [1 / 3, 0.0, 1 / 3, 1 / 3])
    (g,) = _grads(backend, lambda x: gc.max_pool2d(x, 2), x=np.array([[[[1.0, 2.0], [2.0, 0.0]]]]))
    np.testing.assert_array_equal(g, [[[[0.0, 1.0], [0.0, 0.0]]]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_kinks_of_relu_leaky_relu_and_abs(backend):
    x = np.array([0.0, 2.0, -2.0])
    np.testing.assert_array_equal(_grads(backend, gc.relu, x=x)[0], [0, 1, 0])
    np.testing.assert_allclose(_grads(backend, lambda x: gc.leaky_relu(x, 0.25), x=x)[0], [0.25, 1, 0.25])
    np.testing.assert_array_equal(_grads(backend, gc.abs, x=x)[0], [0, 1, -1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_pow_exponent_gradient_is_zero_where_the_base_is_not_positive(backend):
    a, b = np.array([-2.0, 0.0, 0.0, 2.0]), np.array([2.0, 2.0, 0.0, 3.0])
    ga, gb = _grads(backend, lambda a, b: a**b, a=a, b=b)
    np.testing.assert_array_equal(gb[:3], [0.0, 0.0, 0.0])  # PyTorch: NaN at a = -2
    np.testing.assert_allclose(gb[3], 8.0 * np.log(2.0))
    np.testing.assert_allclose(ga[[0, 1, 3]], [-4.0, 0.0, 12.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_pow_base_gradient_is_zero_wherever_the_exponent_is_zero(backend):
    a, b = np.array([0.0, 0.0, 3.0, -1.5]), np.array([0.0, 2.0, 0.0, 0.0])
    ga, gb = _grads(backend, lambda a, b: a**b, a=a, b=b)
    np.testing.assert_array_equal(ga, [0.0, 0.0, 0.0, 0.0])  # 0 ** 0 included: no 0 * inf
    (gx,) = _grads(backend, lambda x: x**0.0, x=np.array([0.0, 1.0]))
    np.testing.assert_array_equal(gx, [0.0, 0.0])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_sqrt_and_log_at_zero_and_the_where_trap(backend):
    x = np.array([0.0, 4.0])
    np.testing.assert_array_equal(_grads(backend, gc.sqrt, x=x)[0], [np.inf, 0.25])
    np.testing.assert_array_equal(_grads(backend, gc.log, x=x)[0], [np.inf, 0.25])
    (trap,) = _grads(backend, lambda x: gc.where(x > 0, gc.sqrt(x), 0.0), x=x)
    assert np.isnan(trap[0]) and trap[1] == 0.25
    (safe,) = _grads(backend, lambda x: gc.where(x > 0, gc.sqrt(gc.where(x > 0, x, 1.0)), 0.0), x=x)
    np.testing.assert_array_equal(safe, [0.0, 0.25])
