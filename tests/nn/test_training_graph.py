"""Training graphs: forward + backward + updates in one graph, and networks that learn with it."""

import re

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, GradientError

RNG = np.random.default_rng(0)


def _xor_data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    return x, y


def _mlp_graph(net, opt, n_in=2):
    with gc.Graph("mlp", seed=1) as g:
        x = g.input("x", ("batch", n_in))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
        acc = nn.metrics.accuracy(net(x, training=False), y)
    return g, nn.training_graph(loss, opt), acc


def test_training_graph_parts_and_text_views():
    net = nn.Sequential([nn.Dense(8, activation="relu"), nn.Dense(2)], name="net")
    g, tg, _ = _mlp_graph(net, nn.SGD(0.1, momentum=0.9))
    assert tg.graph is g and tg.optimizer.graph is g
    assert set(tg.grads) == set(tg.params) == {"net/dense/w", "net/dense/b", "net/dense_1/w", "net/dense_1/b"}
    for name, grad in tg.grads.items():
        assert grad.shape == g.params[name].shape and grad.is_backward
    assert tg.state_names == ["sgd/step"] + [f"sgd/velocity/{p}" for p in tg.params]
    assert set(g.updates) == {*tg.params, *tg.state_names}
    fwd, bwd = tg.forward_text(), tg.backward_text()
    assert "bwd of" not in fwd and "cross_entropy_labels" in fwd and "matmul" in fwd
    assert "bwd of" in bwd and "sgd" in bwd and "cross_entropy_labels(" not in bwd.split("{", 1)[1]
    # every update in the backward view names a value that the view defines
    ups = re.search(r"update (.*)", bwd).group(1)
    defined = set(re.findall(r"^\s+(%\d+):", bwd, re.M))
    for var, ref in re.findall(r"(\S+) <- (%\d+)", ups):
        assert ref in defined, (var, ref)
    assert {v for v, _ in re.findall(r"(\S+) <- (%\d+)", ups)} == set(g.updates)


def test_each_call_is_one_step_with_updates_in_place():
    net = nn.Sequential([nn.Dense(4, activation="tanh"), nn.Dense(2)])
    g, tg, _ = _mlp_graph(net, nn.GD(0.5))
    x, y = _xor_data(16)
    w_before = g.values["sequential/dense/w"].copy()
    w_array = g.values["sequential/dense/w"]
    grads = gc.run(g, {"x": x, "y": y}, outputs=[tg.grads["sequential/dense/w"]], apply_updates=False)[0]
    step = tg.compile()
    (loss,) = step(x=x, y=y)
    assert loss.shape == () and np.isfinite(loss)
    assert g.values["sequential/dense/w"] is w_array  # updated in place
    np.testing.assert_allclose(w_array, w_before - 0.5 * grads, rtol=1e-5, atol=1e-7)
    assert float(g.values["gd/step"]) == 1.0


def test_mlp_learns_xor():
    net = nn.Sequential([nn.Dense(16, activation="tanh"), nn.Dense(16, activation="tanh"), nn.Dense(2)])
    g, tg, acc = _mlp_graph(net, nn.Adam(0.03))
    x, y = _xor_data(128)
    step = tg.compile(outputs=[tg.loss])
    first = float(step(x=x, y=y)[0])
    for _ in range(300):
        (loss,) = step(x=x, y=y)
    assert first > 0.6 and float(loss) < 0.05, (first, float(loss))
    xt, yt = _xor_data(256, seed=1)
    assert float(gc.run(g, {"x": xt, "y": yt}, outputs=acc, apply_updates=False)) > 0.93


def test_linear_regression_converges_to_least_squares():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 3))
    y = x @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.05 * rng.standard_normal((64, 1))
    layer = nn.Dense(1)
    with gc.Graph("lin") as g:
        xi, yi = g.input("x", ("batch", 3), "float64"), g.input("y", ("batch", 1), "float64")
        loss = nn.losses.mse(layer(xi), yi)
    step = nn.training_graph(loss, nn.GD(0.2)).compile()
    for _ in range(300):
        step(x=x, y=y)
    coef, *_ = np.linalg.lstsq(np.hstack([x, np.ones((64, 1))]), y, rcond=None)
    np.testing.assert_allclose(g.values["dense/w"], coef[:3], atol=1e-6)
    np.testing.assert_allclose(g.values["dense/b"], coef[3], atol=1e-6)


def _bars(n, seed):
    """8x8 images holding one horizontal (label 0) or vertical (label 1) bright bar, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = 0.2 * rng.standard_normal((n, 1, 8, 8))
    pos = rng.integers(1, 7, n)
    for i in range(n):
        if y[i]:
            x[i, 0, :, pos[i]] += 1.0
        else:
            x[i, 0, pos[i], :] += 1.0
    return x.astype(np.float32), y


def test_cnn_with_dropout_and_batchnorm_learns_bars():
    net = nn.Sequential([nn.Conv2D(4, 3, padding=1), nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(2),
                         nn.Flatten(), nn.Dropout(0.25), nn.Dense(2)], name="cnn")  # fmt: skip
    with gc.Graph("cnn", seed=0) as g:
        x = g.input("x", ("batch", 1, 8, 8))
        y = g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
        acc = nn.metrics.accuracy(net(x, training=False), y)
    tg = nn.training_graph(loss, nn.Adam(0.02))
    assert "cnn/batch_norm/running_mean" not in tg.params and "cnn/batch_norm/gamma" in tg.params
    xs, ys = _bars(64, 0)
    step = tg.compile()
    losses = [float(step(x=xs[i : i + 16], y=ys[i : i + 16])[0]) for _ in range(10) for i in range(0, 64, 16)]
    assert np.mean(losses[-4:]) < 0.25 * np.mean(losses[:4]), losses
    assert not np.allclose(g.values["cnn/batch_norm/running_mean"], 0)  # running stats were tracked
    xt, yt = _bars(64, 1)
    assert float(gc.run(g, {"x": xt, "y": yt}, outputs=acc, apply_updates=False)) >= 0.95


def test_training_only_chosen_params():
    net = nn.Sequential([nn.Dense(4, activation="tanh"), nn.Dense(2)])
    with gc.Graph("sub") as g:
        x, y = g.input("x", ("batch", 2)), g.input("y", ("batch",), "int64")
        loss = nn.losses.cross_entropy(net(x, training=True), y)
    frozen = g.values["sequential/dense/w"].copy()
    tg = nn.training_graph(loss, nn.Adam(0.1), params=list(net[1].params))
    assert set(tg.params) == set(net[1].params) and "sequential/dense/w" not in g.updates
    xs, ys = _xor_data(16)
    step = tg.compile()
    step(x=xs, y=ys)
    np.testing.assert_array_equal(g.values["sequential/dense/w"], frozen)
    assert not np.allclose(g.values["sequential/dense_1/b"], 0)


def test_training_graph_errors():
    net = nn.Sequential([nn.Dense(2)])
    with gc.Graph("e") as g:
        x = g.input("x", ("batch", 2))
        out = net(x)
        nothing = gc.sum(x * x)
    with pytest.raises(GradientError, match=r"loss must be a float scalar, got f32\[batch,2\]"):
        nn.training_graph(out, nn.SGD())
    with pytest.raises(GradientError, match="does not depend on any trainable parameter"):
        nn.training_graph(nothing, nn.SGD())
    with pytest.raises(AttributeValueError, match="'missing' is not a parameter of graph 'e'"):
        nn.training_graph(gc.sum(out), nn.SGD(), params=["missing"])
    with pytest.raises(AttributeValueError, match="unknown optimizer 'adagrad'"):
        nn.training_graph(gc.sum(out), "adagrad")
    assert g.updates == {}
