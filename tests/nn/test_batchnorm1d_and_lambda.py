"""nn.BatchNorm1D on (N, C) and (N, C, L) inputs against NumPy (training and evaluation, running
statistics, both backends), its gradients against finite differences, and nn.Lambda; with the
errors of both."""

import numpy as np
import pytest
from gradcheck import check_grad, numeric_grad

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, DTypeError, GraphStructureError, ShapeError

RNG = np.random.default_rng(7)
LINE = r" \(declared at .*test_batchnorm1d_and_lambda.py:\d+\)$"


def _batchnorm_numpy(x, gamma, beta, eps):
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("backend", ["reference", "numba"])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)], ids=["NC", "NCL"])
def test_batchnorm1d_training_and_evaluation_match_numpy(backend, shape):
    bn = nn.BatchNorm1D(momentum=0.25, eps=1e-3)
    with gc.Graph("bn1d") as g:
        x = g.input("x", ("batch", *shape[1:]), "float64")
        train, ev = bn(x, training=True), bn(x, training=False)
    assert set(bn.params) == {"batch_norm/gamma", "batch_norm/beta"}
    assert set(bn.state) == set(g.updates) == {"batch_norm/running_mean", "batch_norm/running_var"}
    gamma, beta = np.array([0.5, 2.0, -1.0]), np.array([0.1, 0.0, 3.0])
    g.values["batch_norm/gamma"][:], g.values["batch_norm/beta"][:] = gamma, beta
    xv = RNG.standard_normal(shape) * np.array([1.0, 3.0, 0.2]).reshape(1, 3, *[1] * (len(shape) - 2)) + 4.0
    step = gc.compile(g, backend, outputs=[train], apply_updates=True)
    np.testing.assert_allclose(step(x=xv)[0], _batchnorm_numpy(xv, gamma, beta, 1e-3), rtol=1e-9, atol=1e-12)
    # running statistics: PyTorch's momentum convention, unbiased variance over all but axis 1
    axes = (0, *range(2, len(shape)))
    n = xv.size // 3
    mean, unbiased = xv.mean(axes), xv.var(axes) * n / (n - 1)
    rm, rv = 0.25 * mean, 0.75 * 1.0 + 0.25 * unbiased
    np.testing.assert_allclose(g.values["batch_norm/running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(g.values["batch_norm/running_var"], rv, rtol=1e-12)
    # evaluation normalises with the running statistics and changes nothing
    evaluate = gc.compile(g, backend, outputs=[ev], apply_updates=False)
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    want = (xv - rm.reshape(bshape)) / np.sqrt(rv.reshape(bshape) + 1e-3) * gamma.reshape(bshape)
    np.testing.assert_allclose(evaluate(x=xv)[0], want + beta.reshape(bshape), rtol=1e-9)
    np.testing.assert_allclose(g.values["batch_norm/running_mean"], rm, rtol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_gradient_wrt_its_input(training):
    check_grad(lambda x: nn.BatchNorm1D()(x, training=training), {"x": RNG.standard_normal((5, 2, 3))})


def test_batchnorm1d_gradients_wrt_gamma_and_beta():
    bn = nn.BatchNorm1D()
    with gc.Graph("bn_params") as g:
        x = g.input("x", (5, 3), "float64")
        loss = gc.sum(bn(x, training=True) * gc.constant(RNG.standard_normal((5, 3)), "float64"))
    grads = gc.gradients(loss)
    assert set(grads) == {"batch_norm/gamma", "batch_norm/beta"}  # running statistics are not trained
    xv = RNG.standard_normal((5, 3))
    for name in grads:
        value = g.values[name]
        value[:] = RNG.uniform(0.5, 1.5, value.shape)
        analytic = gc.run(g, {"x": xv}, outputs=grads[name], apply_updates=False)
        num = numeric_grad(lambda: float(gc.run(g, {"x": xv}, outputs=loss, apply_updates=False)), value, 1e-6)
        np.testing.assert_allclose(analytic, num, rtol=1e-5, atol=1e-7, err_msg=name)


def test_batchnorm1d_errors():
    with pytest.raises(AttributeValueError, match=r"^BatchNorm: momentum must be in \[0, 1\], got 1\.5" + LINE):
        nn.BatchNorm1D(momentum=1.5)
    with pytest.raises(AttributeValueError, match=r"^BatchNorm: eps must be a positive number, got 0" + LINE):
        nn.BatchNorm1D(eps=0)
    with gc.Graph("bad") as g:
        v = g.input("v", (4,))
        sym = g.input("sym", ("batch", "c"))
        ints = g.input("ints", ("batch", 3), "int32")
        x3, x5 = g.input("x3", ("batch", 3)), g.input("x5", ("batch", 5))
    with pytest.raises(ShapeError, match=r"^BatchNorm 'batch_norm' expects a \(batch, channels, \.\.\.\) input, "
                                         r"got f32\[4\]" + LINE):  # fmt: skip
        nn.BatchNorm1D()(v)
    with pytest.raises(ShapeError, match=r"needs a concrete channel count \(axis 1\) to size its parameters, "
                                         r"got f32\[batch,c\]" + LINE):  # fmt: skip
        nn.BatchNorm1D()(sym)
    with pytest.raises(DTypeError, match=r"needs a float input, got i32\[batch,3\]; cast it first" + LINE):
        nn.BatchNorm1D()(ints)
    assert g.params == {}  # failed first calls leave no parameters behind
    bn = nn.BatchNorm1D()
    bn(x3, training=True)
    with pytest.raises(ShapeError, match=r"was built for inputs f32\[batch,3\] but is now called with f32\[batch,5\] "
                                         r"\(3 channels expected\)" + LINE):  # fmt: skip
        bn(x5)
    with pytest.raises(GraphStructureError, match="already called with training=True"):
        bn(x3, training=True)


# -- Lambda -----------------------------------------------------------------------------------
def test_lambda_applies_its_function_and_has_no_parameters():
    def double(v):
        return v * 2.0

    layer = nn.Lambda(double)
    anonymous = nn.Lambda(lambda v: gc.tanh(v))
    assert (layer.name, anonymous.name, nn.Lambda(double, name="twice").name) == ("double", "lambda", "twice")
    with gc.Graph("lam") as g:
        x = g.input("x", ("batch", 3), "float64")
        y = anonymous(layer(x), training=True)  # training is accepted and ignored
        z = layer(x)  # a second call reuses the layer
    assert layer.params == layer.state == {} and g.params == {}
    xv = RNG.standard_normal((4, 3))
    got_y, got_z = gc.run(g, {"x": xv}, outputs=[y, z])
    np.testing.assert_allclose(got_y, np.tanh(2.0 * xv), rtol=1e-12)
    np.testing.assert_allclose(got_z, 2.0 * xv, rtol=1e-12)
    check_grad(lambda x: nn.Lambda(lambda v: v * v * 3.0)(x), {"x": xv})


def test_lambda_inside_sequential_shares_the_network_scope():
    net = nn.Sequential([nn.Dense(2), nn.Lambda(lambda v: v - 1.0), nn.Activation("relu")], name="net")
    with gc.Graph("seq") as g:
        x = g.input("x", ("batch", 3), "float64")
        y = net(x)
    xv = RNG.standard_normal((4, 3))
    w, b = g.values["net/dense/w"], g.values["net/dense/b"]
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=y), np.maximum(xv @ w + b - 1.0, 0), rtol=1e-12)


def test_lambda_errors():
    with pytest.raises(AttributeValueError, match=r"^Lambda: expects a function of a node, got 3" + LINE):
        nn.Lambda(3)
    with pytest.raises(AttributeValueError, match=r"^Lambda: name must be a non-empty string without '/', "
                                                  r"got 'a/b'" + LINE):  # fmt: skip
        nn.Lambda(lambda v: v, name="a/b")
    with pytest.raises(GraphStructureError, match=r"^Lambda 'lambda': expects a graph node, got ndarray" + LINE):
        nn.Lambda(lambda v: v)(np.ones(3))
    with gc.Graph("ret") as g:
        x = g.input("x", (2, 3))
    with pytest.raises(GraphStructureError, match=r"^Lambda 'lambda': its function returned int, not a graph node"):
        nn.Lambda(lambda v: 3)(x)
    with pytest.raises(ShapeError, match=r"^reshape\(f32\[2,3\]\): cannot reshape \[2,3\] to \[7\]" + LINE):
        nn.Lambda(lambda v: gc.reshape(v, (7,)))(x)
