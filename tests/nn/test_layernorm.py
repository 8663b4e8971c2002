"""LayerNorm over the last axis: values against NumPy, gradients against finite differences,
compiled against the reference, and its argument errors."""

import numpy as np
import pytest
from gradcheck import check_grad, numeric_grad

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, ShapeError

RNG = np.random.default_rng(0)


def _numpy_layernorm(x, gain, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gain + bias


def _graph():
    ln = nn.LayerNorm()
    with gc.Graph("ln") as g:
        x = g.input("x", (2, 3, 4), "float64")
        y = ln(x)
        loss = gc.sum(gc.tanh(y) * gc.constant(RNG.standard_normal((2, 3, 4)), "float64"))
        grads = gc.grad(loss, [ln.gain, ln.bias, x])
    g.values["layer_norm/gain"][:] = RNG.uniform(0.5, 1.5, 4)
    g.values["layer_norm/bias"][:] = RNG.standard_normal(4)
    return g, ln, y, loss, grads


def test_values_parameters_and_training_mode():
    g, ln, y, _, _ = _graph()
    assert y.shape == (2, 3, 4) and list(ln.params) == ["layer_norm/gain", "layer_norm/bias"]
    xv = RNG.standard_normal((2, 3, 4)) * 3 + 1
    want = _numpy_layernorm(xv, g.values["layer_norm/gain"], g.values["layer_norm/bias"])
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=y), want, rtol=1e-10)
    with g:
        y_train = ln(g.inputs["x"], training=True)  # no running statistics: training is the same
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=y_train), want, rtol=1e-10)


def test_gradients_match_finite_differences():
    g, ln, y, loss, grads = _graph()
    xv = RNG.standard_normal((2, 3, 4))
    analytic = gc.run(g, {"x": xv}, outputs=grads)
    for name, got in zip(["layer_norm/gain", "layer_norm/bias"], analytic[:2]):
        numeric = numeric_grad(lambda: float(gc.run(g, {"x": xv}, outputs=loss)), g.values[name], 1e-6)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-9, err_msg=name)
    check_grad(lambda x: nn.LayerNorm(affine=False)(x), {"x": RNG.standard_normal((3, 5))})


def test_compiled_matches_reference():
    g, ln, y, loss, grads = _graph()
    xv = RNG.standard_normal((2, 3, 4))
    want = gc.run(g, {"x": xv}, outputs=[y, *grads])
    got = gc.compile(g, backend="numba", outputs=[y, *grads])(x=xv)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)


def test_errors():
    with pytest.raises(AttributeValueError, match=r"LayerNorm: eps must be a positive number, got 0"):
        nn.LayerNorm(eps=0)
    ln = nn.LayerNorm()
    with gc.Graph("e") as g:
        ln(g.input("x", ("batch", 4)))
        with pytest.raises(ShapeError, match=r"LayerNorm 'layer_norm' was built for inputs f32\[batch,4\] but is now "
                           r"called with f32\[batch,5\] \(4 features expected\)"):  # fmt: skip
            ln(g.input("z", ("batch", 5)))
        with pytest.raises(ShapeError, match=r"LayerNorm 'layer_norm_1' expects a \(\.\.\., features\) input, got f32"):
            nn.LayerNorm()(g.input("s", ()))
