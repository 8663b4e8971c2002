"""Gradients of elementwise, activation, reduction, shape and matmul ops vs finite differences."""

import numpy as np
import pytest
from gradcheck import check_grad, check_second_order

import graphc as gc

rng = np.random.default_rng(0)
A = rng.standard_normal((3, 4))
B = rng.standard_normal((4,))  # broadcasts against A
C = rng.standard_normal((3, 1))
POS = rng.uniform(0.5, 2.0, (3, 4))

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "maximum": gc.maximum,
    "minimum": gc.minimum,
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1))])
def test_binary_broadcasting(name, shapes):
    a = rng.standard_normal(shapes[0])
    b = rng.uniform(0.5, 2.0, shapes[1]) * rng.choice([-1, 1], shapes[1])
    check_grad(BINARY[name], {"a": a, "b": b})


def test_pow_both_operands():
    check_grad(lambda a, b: a**b, {"a": POS, "b": rng.standard_normal((4,))})


UNARY = {
    "neg": lambda x: -x,
    "exp": gc.exp,
    "tanh": gc.tanh,
    "sigmoid": gc.sigmoid,
    "relu": gc.relu,
    "leaky_relu": lambda x: gc.leaky_relu(x, 0.1),
    "softplus": gc.softplus,
    "gelu": gc.gelu,
    "erf": gc.erf,
    "sin": gc.sin,
    "cos": gc.cos,
    "abs": gc.abs,
    "square": gc.square,
    "softmax0": lambda x: gc.softmax(x, axis=0),
    "softmax": gc.softmax,
    "log_softmax": gc.log_softmax,
    "sum": lambda x: gc.sum(x, 1),
    "sum_keep": lambda x: gc.sum(x, 0, keepdims=True),
    "mean": gc.mean,
    "max": lambda x: gc.max(x, 1),
    "min": lambda x: gc.min(x, 0, keepdims=True),
    "transpose": gc.transpose,
    "reshape": lambda x: gc.reshape(x, (2, -1)),
    "broadcast_to": lambda x: gc.broadcast_to(gc.sum(x, 0, keepdims=True), (5, 4)),
    "flatten": lambda x: gc.flatten(gc.reshape(x, (3, 2, 2))),
    "where": lambda x: gc.where(x > 0.1, x * 2.0, gc.exp(x)),
    "cast_mask": lambda x: gc.cast(x > 0, "float64") * x * x,
}


@pytest.mark.parametrize("name", UNARY)
def test_unary(name):
    x = A.copy()
    x[np.abs(x) < 0.05] = 0.3  # keep away from kinks
    check_grad(UNARY[name], {"x": x})


@pytest.mark.parametrize("name", ["log", "sqrt"])
def test_positive_domain(name):
    check_grad(getattr(gc, name), {"x": POS})


@pytest.mark.parametrize(
    "sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 2)), ((4,), (4, 3))]
)
def test_matmul_batched_broadcasting(sa, sb):
    check_grad(lambda a, b: a @ b, {"a": rng.standard_normal(sa), "b": rng.standard_normal(sb)})


def test_fan_out_sums_gradients():
    check_grad(lambda x: x * x + gc.tanh(x) * x, {"x": A})


def test_second_order_compositions():
    check_second_order(lambda x: gc.tanh(x) * gc.sigmoid(x), {"x": A}, "x")
    check_second_order(lambda x, w: gc.softmax(x @ w), {"x": A, "w": rng.standard_normal((4, 2))}, "w")
    check_second_order(lambda x: gc.log_softmax(x * x), {"x": A}, "x")


def test_unreachable_wrt_gets_zeros_and_ints_stop_gradient():
    with gc.Graph() as g:
        x = g.input("x", (3,), "float64")
        z = g.input("z", (3,), "float64")
        idx = g.input("i", (3,), "int64")
        y = gc.sum(x * gc.cast(idx, "float64"))
    gz, gx = gc.grad(y, [z, x])
    out = gc.run(g, {"x": np.ones(3), "z": np.ones(3), "i": np.arange(3)}, outputs=[gz, gx])
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[1], [0.0, 1.0, 2.0])
    assert all(n.is_backward for n in g.nodes if n.id > y.id)


def test_backward_nodes_record_their_forward_node():
    with gc.Graph() as g:
        x = g.input("x", (3,), "float64")
        h = gc.tanh(x)
        y = gc.sum(h)
    gx = gc.grad(y, x)
    assert gx.is_backward and gx.grad_of == h.label == "tanh#1"
    assert gx.scope == h.scope and gx.location == h.location  # placed where the forward node was
    assert not h.is_backward and h.grad_of is None
