"""Size-0 dimensions: the Numba backend gives what the reference interpreter gives.

Each graph runs once on each backend (a fresh graph each, so updates start from the same
values) with a batch of 0 or a slice to nothing; outputs agree in shape, dtype, value and
NaN position (a mean over nothing is NaN, a sum 0), and so do the variables after the
step. A max over nothing is the reference's error on both.
"""

import warnings

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import GraphcError

pytest.importorskip("numba")


def _matmul_grad():
    with gc.Graph("mm") as g:
        x = g.input("x", ("b", 3))
        w = g.param("w", (3, 4))
        loss = gc.sum(x @ w)
    return g, [loss, gc.grad(loss, w), gc.grad(loss, x)], {"x": np.zeros((0, 3), np.float32)}


def _elementwise_and_reductions():
    with gc.Graph("ew") as g:
        x = g.input("x", ("b", 3))
        y = gc.exp(x) * 2.0 + gc.tanh(x)
        outs = [y, gc.sum(y, 0), gc.sum(y), gc.mean(y, 0), gc.mean(y), gc.max(y, 1), gc.mean(y, 1, keepdims=True)]
    return g, outs, {"x": np.zeros((0, 3), np.float32)}


def _dense_ops():
    with gc.Graph("dense", seed=1) as g:
        x = g.input("x", ("b", 3))
        w = g.param("w", (3, 4))
        h = gc.tanh(x @ w)
        p = gc.softmax(h, 1)
        outs = [p, gc.log_softmax(h, 0), gc.transpose(h) @ h, gc.argmax(h, 1), h[:, 1:], gc.exp(h[..., 4:])]
        outs += [gc.grad(gc.sum(p * h), w), gc.grad(gc.mean(gc.max(h, 1)), x)]
    return g, outs, {"x": np.zeros((0, 3), np.float32)}


def _slice_of_a_dim_of_one():
    with gc.Graph("slice") as g:
        x = g.input("x", ("b", 1))
        w = g.param("w", (1, 1))
        y = (x @ w)[..., 1:]
        loss = gc.sum(gc.exp(y))
    return g, [y, gc.exp(x[..., 1:]), loss, gc.grad(loss, w), gc.grad(loss, x)], {"x": np.ones((4, 1), np.float32)}


def _mlp_training_step():
    net = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(3)])
    with gc.Graph("mlp", seed=1) as g:
        x = g.input("x", ("batch", 4))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
    gc.training_graph(loss, nn.Adam(0.01))
    return g, [loss], {"x": np.zeros((0, 4), np.float32), "y": np.zeros(0, np.int64)}


def _cnn_training_step():
    net = nn.Sequential([nn.Conv2D(3, 3, padding=1, activation="relu"), nn.MaxPool2D(2), nn.Conv2D(2, 3, stride=2),
                         nn.AvgPool2D(1), nn.Flatten(), nn.Dense(3)])  # fmt: skip
    with gc.Graph("cnn", seed=1) as g:
        x = g.input("x", ("batch", 2, 8, 8))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
    gc.training_graph(loss, nn.SGD(0.1, momentum=0.9))
    return g, [loss], {"x": np.zeros((0, 2, 8, 8), np.float32), "y": np.zeros(0, np.int64)}


GRAPHS = {
    "matmul_and_its_gradient": _matmul_grad,
    "elementwise_and_reductions": _elementwise_and_reductions,
    "softmax_slices_argmax_max_grad": _dense_ops,
    "slice_of_a_dim_of_one": _slice_of_a_dim_of_one,
    "mlp_training_step": _mlp_training_step,
    "cnn_training_step": _cnn_training_step,
}


def _run(build, backend):
    g, outs, feeds = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "mean of empty slice"
        got = gc.compile(g, backend, outputs=outs)(feeds)
    assert any(a.size == 0 for a in [*feeds.values(), *got])  # the case is really empty somewhere
    return got, g.values


@pytest.mark.parametrize("name", GRAPHS)
def test_numba_matches_the_reference_on_empty_arrays(name):
    want, want_vars = _run(GRAPHS[name], "reference")
    got, got_vars = _run(GRAPHS[name], "numba")
    for a, b in zip(want, got):
        assert (b.shape, b.dtype) == (a.shape, a.dtype)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=0)  # NaN where the reference has NaN
    assert set(got_vars) == set(want_vars)
    for k in want_vars:
        np.testing.assert_allclose(got_vars[k], want_vars[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_empty_reductions_give_the_identity_or_nan_as_the_reference():
    got, _ = _run(_elementwise_and_reductions, "numba")
    np.testing.assert_array_equal(got[1], np.zeros(3, np.float32))  # sum over the empty batch
    assert got[2] == 0 and np.isnan(got[3]).all() and np.isnan(got[4])
    assert got[5].shape == (0,) and got[6].shape == (0, 1)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_max_over_an_empty_axis_is_the_same_error_on_both_backends(backend):
    with gc.Graph("mx") as g:
        x = g.input("x", ("b", 3))
        y = gc.max(gc.exp(x), 0)
    step = gc.compile(g, backend, outputs=[y])
    with pytest.raises(GraphcError, match=r"max failed at run time on \(0, 3\): zero-size array .* no identity"):
        step(x=np.zeros((0, 3), np.float32))
    # the same step still runs a batch that is not empty
    np.testing.assert_allclose(step(x=np.zeros((2, 3), np.float32))[0], np.ones(3, np.float32))
