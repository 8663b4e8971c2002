"""End to end: gradients of whole models with respect to their parameters vs finite differences."""

import numpy as np
import pytest
from gradcheck import numeric_grad

import graphc as gc


def _check_params(g, loss, feeds, rtol=1e-5, atol=1e-7):
    params = list(g.trainable().values())
    grads = gc.grad(loss, params)
    analytic = gc.run(g, feeds, outputs=grads)
    for p, a in zip(params, analytic):
        value = g.values[p.name]  # perturbed in place: the graph reads it on every run
        num = numeric_grad(lambda: float(gc.run(g, feeds, outputs=loss)), value, 1e-6)
        np.testing.assert_allclose(a, num, rtol=rtol, atol=atol, err_msg=f"gradient of {p.name}")
        assert np.abs(a).max() > 0, f"{p.name} got an all-zero gradient"


def test_two_layer_mlp_with_cross_entropy():
    rng = np.random.default_rng(0)
    with gc.Graph("mlp", seed=1) as g:
        x = g.input("x", ("batch", 6), "float64")
        y = g.input("y", ("batch",), "int64")
        with g.scope("l1"):
            h = gc.relu(x @ g.param("w", (6, 5), dtype="float64") + g.param("b", (5,), "normal", "float64"))
        with g.scope("l2"):
            logits = h @ g.param("w", (5, 3), dtype="float64") + g.param("b", (3,), "normal", "float64")
        loss = gc.cross_entropy(logits, y)
    _check_params(g, loss, {"x": rng.standard_normal((7, 6)), "y": rng.integers(0, 3, 7)})


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_small_cnn_conv_relu_pool_dense(pool):
    rng = np.random.default_rng(1)
    with gc.Graph("cnn", seed=2) as g:
        x = g.input("x", ("batch", 2, 6, 6), "float64")
        y = g.input("y", ("batch",), "int64")
        w = g.param("conv/w", (3, 2, 3, 3), "he_normal", "float64")
        b = g.param("conv/b", (3, 1, 1), "normal", "float64")
        h = gc.relu(gc.conv2d(x, w, padding=1) + b)
        h = gc.max_pool2d(h, 2) if pool == "max" else gc.avg_pool2d(h, 2)
        h = gc.flatten(h)
        logits = h @ g.param("dense/w", (27, 4), dtype="float64") + g.param("dense/b", (4,), "normal", "float64")
        loss = gc.cross_entropy(logits, y)
    _check_params(g, loss, {"x": rng.standard_normal((3, 2, 6, 6)), "y": rng.integers(0, 4, 3)})


def test_hessian_vector_product_of_mlp_loss_matches_differences_of_gradients():
    rng = np.random.default_rng(2)
    with gc.Graph("hvp", seed=3) as g:
        x = g.input("x", ("batch", 4), "float64")
        w = g.param("w", (4, 3), dtype="float64")
        loss = gc.mean(gc.tanh(x @ w) ** 2)
    gw = gc.grad(loss, w)
    v = rng.standard_normal((4, 3))
    hv = gc.grad(gc.sum(gw * v), w)  # a NumPy array operand becomes a constant of the graph
    feeds = {"x": rng.standard_normal((5, 4))}
    analytic = gc.run(g, feeds, outputs=hv)
    base = g.values["w"].copy()
    eps = 1e-6
    g.values["w"][...] = base + eps * v
    hi = gc.run(g, feeds, outputs=gw)
    g.values["w"][...] = base - eps * v
    lo = gc.run(g, feeds, outputs=gw)
    g.values["w"][...] = base
    np.testing.assert_allclose(analytic, (hi - lo) / (2 * eps), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_gradient_wrt_an_unused_symbolic_input_is_zeros_of_its_runtime_shape(backend):
    with gc.Graph("unused") as g:
        x = g.input("x", ("batch", 3))
        z = g.input("z", ("batch", 2))
        loss = gc.sum(x * x)
    gz = gc.grad(loss, z)
    exe = gc.compile(g, backend, outputs=[gz])
    out = exe(x=np.ones((4, 3), np.float32), z=np.ones((4, 2), np.float32))[0]
    assert out.shape == (4, 2) and out.dtype == np.float32 and not out.any()
