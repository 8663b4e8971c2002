"""Layers: parameters, output shapes and values, gradients, BatchNorm modes, reuse, and errors."""

import numpy as np
import pytest
from gradcheck import check_grad, numeric_grad

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, DTypeError, GraphStructureError, ShapeError

RNG = np.random.default_rng(0)


def _conv_ref(x, w, b, stride=1, pad=0):
    """Direct NCHW cross-correlation, for checking the layer's wiring."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + b.reshape(1, -1, 1, 1)


def test_dense_parameters_shapes_and_values():
    layer = nn.Dense(5, activation="tanh")
    with gc.Graph("d", seed=3) as g:
        x = g.input("x", ("batch", 4), "float64")
        y = layer(x)
    assert y.shape == ("batch", 5) and y.dtype == "float64"
    assert list(layer.params) == ["dense/w", "dense/b"]
    assert layer.params["dense/w"].shape == (4, 5) and layer.params["dense/w"].dtype == "float64"
    w, b = g.values["dense/w"], g.values["dense/b"]
    lim = np.sqrt(6 / 9)  # Glorot-uniform bound for fan_in 4, fan_out 5
    assert np.all(np.abs(w) <= lim) and w.std() > lim / 4 and np.all(b == 0)
    xv = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=y), np.tanh(xv @ w + b), rtol=1e-12)


def test_initialisation_is_seeded_by_the_graph():
    def weights(seed, init):
        with gc.Graph("s", seed=seed) as g:
            nn.Dense(64, init=init)(g.input("x", (2, 32)))
        return g.values["dense/w"]

    np.testing.assert_array_equal(weights(1, "he_normal"), weights(1, "he_normal"))
    assert not np.allclose(weights(1, "he_normal"), weights(2, "he_normal"))
    assert weights(1, "he_normal").std() == pytest.approx(np.sqrt(2 / 32), rel=0.1)


def test_conv_pool_flatten_shapes_and_values():
    conv = nn.Conv2D(3, 3, padding=1, activation="relu")
    with gc.Graph("c") as g:
        x = g.input("x", ("batch", 2, 6, 6), "float64")
        h = conv(x)
        shapes = {
            "conv": h.shape,
            "valid": nn.Conv2D(4, (3, 2), stride=2)(x).shape,
            "same": nn.Conv2D(4, 4, padding="same")(x).shape,
            "max": nn.MaxPool2D(2)(h).shape,
            "avg": nn.AvgPool2D(3, stride=1)(h).shape,
            "flat": nn.Flatten()(nn.MaxPool2D(2)(h)).shape,
        }
    assert shapes == {
        "conv": ("batch", 3, 6, 6), "valid": ("batch", 4, 2, 3), "same": ("batch", 4, 6, 6),
        "max": ("batch", 3, 3, 3), "avg": ("batch", 3, 4, 4), "flat": ("batch", 27),
    }  # fmt: skip
    assert conv.params["conv2d/w"].shape == (3, 2, 3, 3)
    xv = RNG.standard_normal((2, 2, 6, 6))
    want = np.maximum(_conv_ref(xv, g.values["conv2d/w"], g.values["conv2d/b"] + 0.5, pad=1), 0)
    g.values["conv2d/b"][:] = 0.5
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=h), want, rtol=1e-10)


def test_activations_by_name_and_callable():
    with gc.Graph("a") as g:
        x = g.input("x", (2, 3), "float64")
        outs = [nn.Activation(a)(x) for a in ("relu", "sigmoid", "softmax", "linear")]
        outs.append(nn.Activation(lambda v: v * 2.0)(x))
    xv = RNG.standard_normal((2, 3))
    relu, sig, soft, lin, dbl = gc.run(g, {"x": xv}, outputs=outs)
    np.testing.assert_allclose(relu, np.maximum(xv, 0))
    np.testing.assert_allclose(sig, 1 / (1 + np.exp(-xv)))
    np.testing.assert_allclose(soft, np.exp(xv) / np.exp(xv).sum(1, keepdims=True))
    np.testing.assert_allclose(lin, xv)
    np.testing.assert_allclose(dbl, 2 * xv)


def test_dropout_train_and_eval():
    drop = nn.Dropout(0.25)
    with gc.Graph("dr", seed=5) as g:
        x = g.input("x", ("batch", 200))
        train, ev = drop(x, training=True), drop(x, training=False)
    assert ev is x  # identity in evaluation
    xv = np.ones((50, 200), np.float32)
    step = gc.compile(g, outputs=[train])
    a, b = step(x=xv)[0], step(x=xv)[0]
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.02
    assert not np.array_equal(a, b)  # a new mask each step
    assert drop.seed == nn.Dropout(0.25, seed=drop.seed).seed  # derived seeds are deterministic


def _param_grad_check(g, loss, feeds, names, eps=1e-6, rtol=1e-5, atol=1e-7):
    """gc.grad wrt parameters (values held in g.values) against central differences."""
    analytic = gc.run(g, feeds, outputs=gc.grad(loss, [g.params[n] for n in names]), apply_updates=False)
    for name, a in zip(names, analytic):
        num = numeric_grad(lambda: float(gc.run(g, feeds, outputs=loss, apply_updates=False)), g.values[name], eps)
        np.testing.assert_allclose(a, num, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "bn1d", "bn2d"])
def test_layer_gradients_match_finite_differences(kind):
    nets = {
        "mlp": (lambda: nn.Sequential([nn.Dense(4, activation="tanh"), nn.Dense(3)]), (5, 3)),
        "cnn": (
            lambda: nn.Sequential(
                [nn.Conv2D(2, 3, padding=1, activation="tanh"), nn.AvgPool2D(2), nn.Flatten(), nn.Dense(3)]
            ),
            (2, 1, 4, 4),
        ),  # fmt: skip
        "bn1d": (lambda: nn.Sequential([nn.Dense(4), nn.BatchNorm(), nn.Activation("tanh"), nn.Dense(3)]), (6, 3)),
        "bn2d": (lambda: nn.Sequential([nn.Conv2D(2, 2), nn.BatchNorm(), nn.Flatten(), nn.Dense(3)]), (3, 1, 3, 3)),
    }
    make, shape = nets[kind]
    net = make()
    x = RNG.standard_normal(shape)
    y = RNG.integers(0, 3, shape[0])
    # wrt the input, through every layer (float64 throughout: layers take the input's dtype)
    check_grad(lambda x, y: nn.losses.cross_entropy(make()(x, training=True), y), {"x": x, "y": y}, wrt=["x"])
    with gc.Graph("p") as g:
        xi, yi = g.input("x", shape, "float64"), g.input("y", (shape[0],), "int64")
        loss = nn.losses.cross_entropy(net(xi, training=True), yi)
    for name in net.params:  # non-trivial gamma/beta so their gradients are exercised
        g.values[name] += 0.1 * RNG.standard_normal(g.values[name].shape)
    _param_grad_check(g, loss, {"x": x, "y": y}, list(net.params))


def test_batchnorm_train_eval_and_running_stats():
    bn = nn.BatchNorm(momentum=0.1)
    with gc.Graph("bn") as g:
        x = g.input("x", ("batch", 3), "float64")
        train, ev = bn(x, training=True), bn(x, training=False)
    assert set(bn.state) == {"batch_norm/running_mean", "batch_norm/running_var"}
    assert set(g.updates) == set(bn.state)
    xv = RNG.standard_normal((8, 3)) * [1.0, 2.0, 3.0] + [0.0, 5.0, -2.0]
    step = gc.compile(g, outputs=[train], apply_updates=True)  # a training step: updates the running stats
    out = step(x=xv)[0]
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(0), xv.var(0) / (xv.var(0) + 1e-5), rtol=1e-10)
    rm, rv = 0.1 * xv.mean(0), 0.9 + 0.1 * xv.var(0, ddof=1)
    np.testing.assert_allclose(g.values["batch_norm/running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(g.values["batch_norm/running_var"], rv, rtol=1e-12)
    step(x=xv)
    rm, rv = 0.9 * rm + 0.1 * xv.mean(0), 0.9 * rv + 0.1 * xv.var(0, ddof=1)
    np.testing.assert_allclose(g.values["batch_norm/running_var"], rv, rtol=1e-12)
    # evaluation uses the running statistics (run without the graph's updates: no training step)
    got = gc.run(g, {"x": xv}, outputs=ev, apply_updates=False)
    np.testing.assert_allclose(got, (xv - rm) / np.sqrt(rv + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(g.values["batch_norm/running_mean"], rm, rtol=1e-12)


def test_batchnorm2d_normalises_per_channel():
    bn = nn.BatchNorm()
    with gc.Graph("bn2") as g:
        x = g.input("x", ("batch", 2, 3, 3), "float64")
        y = bn(x, training=True)
    xv = RNG.standard_normal((4, 2, 3, 3)) * np.array([1.0, 4.0]).reshape(1, 2, 1, 1) + 3.0
    g.values["batch_norm/gamma"][:] = [2.0, 0.5]
    out = gc.run(g, {"x": xv}, outputs=y, apply_updates=False)
    np.testing.assert_allclose(out.mean((0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(out.std((0, 2, 3)), [2.0, 0.5], rtol=1e-4)
    assert bn.params["batch_norm/gamma"].shape == (2,)


def test_sequential_scopes_and_parameter_sharing():
    net = nn.Sequential([nn.Conv2D(8, 3, padding=1, activation="relu"), nn.MaxPool2D(2), nn.Flatten(),
                         nn.Dropout(0.25), nn.Dense(10)], name="cnn")  # fmt: skip
    with gc.Graph("m") as g:
        x = g.input("x", ("batch", 1, 8, 8))
        y = g.input("y", ("batch",), "int64")
        logits = net(x, training=True)
        eval_logits = net(x, training=False)
        loss = nn.losses.cross_entropy(logits, y)
        acc = nn.metrics.accuracy(eval_logits, y)
        other = nn.Sequential([nn.Dense(2)], name="cnn")(nn.Dense(3)(gc.flatten(x)))
    assert list(net.params) == ["cnn/conv2d/w", "cnn/conv2d/b", "cnn/dense/w", "cnn/dense/b"]
    assert set(g.params) == {*net.params, "dense/w", "dense/b", "cnn_1/dense/w", "cnn_1/dense/b"}
    assert logits.shape == eval_logits.shape == ("batch", 10) and other.shape == ("batch", 2)
    assert loss.shape == () and acc.shape == () and acc.dtype == "float32"
    # both calls read the same parameter nodes; only the training call has dropout
    uses = [n for n in g.nodes if g.params["cnn/dense/w"] in n.inputs]
    assert len(uses) == 2 and {n.scope for n in uses} == {"cnn/dense"}
    ops = {n.op for n in g.live_nodes([eval_logits])}
    assert "dropout_mask" not in ops and "dropout_mask" in {n.op for n in g.live_nodes([logits])}
    assert "cnn/conv2d" in net.summary() and "trainable parameters: 1370" in net.summary()


def test_accuracy_metric_values():
    with gc.Graph("acc") as g:
        z = g.input("z", (4, 3))
        y = g.input("y", (4,), "int64")
        p = g.input("p", (4, 3))
        acc, acc_onehot = nn.metrics.accuracy(z, y), nn.metrics.accuracy(z, p)
        s, t = g.input("s", (4,)), g.input("t", (4,))
        bacc = nn.metrics.binary_accuracy(s, t)
    zv = np.array([[1, 2, 0], [3, 0, 0], [0, 0, 1], [0, 5, 1]], np.float32)
    yv = np.array([1, 0, 0, 0])
    out = gc.run(g, {"z": zv, "y": yv, "p": np.eye(3, dtype=np.float32)[yv], "s": np.array([1, -1, 2, -3], np.float32),
                     "t": np.array([1, 0, 0, 0], np.float32)}, outputs=[acc, acc_onehot, bacc])  # fmt: skip
    assert [float(v) for v in out] == [0.5, 0.5, 0.75]


# -- errors -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: nn.Dense(0), ["Dense", "units", "0"]),
        (lambda: nn.Dense(3.5), ["Dense", "units"]),
        (lambda: nn.Dense(4, activation="swish"), ["Dense", "unknown activation 'swish'", "relu"]),
        (lambda: nn.Dense(4, init="lecun"), ["Dense", "unknown init 'lecun'", "he_normal"]),
        (lambda: nn.Conv2D(8, 0), ["Conv2D", "kernel"]),
        (lambda: nn.Conv2D(8, 3, padding="full"), ["Conv2D", "padding", "'full'"]),
        (lambda: nn.Conv2D(8, 3, stride=2, padding="same"), ["Conv2D", "'same'", "stride 1"]),
        (lambda: nn.MaxPool2D((2, 2, 2)), ["MaxPool2D", "kernel"]),
        (lambda: nn.AvgPool2D(2, padding=2), ["AvgPool2D", "padding"]),
        (lambda: nn.Dropout(1.0), ["Dropout", "p", "[0, 1)"]),
        (lambda: nn.BatchNorm(momentum=2), ["BatchNorm", "momentum"]),
        (lambda: nn.Activation("swish"), ["Activation", "swish"]),
        (lambda: nn.Sequential([nn.Dense(2), "relu"]), ["Sequential", "'relu'"]),
        (lambda: nn.Dense(2, name="a/b"), ["Dense", "name"]),
    ],
)
def test_bad_layer_arguments(make, words):
    with pytest.raises(AttributeValueError) as info:
        make()
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    assert "test_layers.py:" in msg, msg


def test_incompatible_later_call_is_a_clear_error():
    dense = nn.Dense(4)
    with gc.Graph("e") as g:
        dense(g.input("a", ("batch", 3)))
        with pytest.raises(ShapeError) as info:
            dense(g.input("b", ("batch", 5)))
    msg = str(info.value)
    assert "Dense 'dense'" in msg and "f32[batch,3]" in msg and "f32[batch,5]" in msg and "3 input features" in msg
    assert "test_layers.py:" in msg
    with gc.Graph("other") as g2:
        with pytest.raises(GraphStructureError, match="built in graph 'e'"):
            dense(g2.input("a", ("batch", 3)))


def test_bad_inputs_leave_nothing_behind():
    conv, dense, bn = nn.Conv2D(4, 3), nn.Dense(4), nn.BatchNorm()
    with gc.Graph("e") as g:
        with pytest.raises(ShapeError, match=r"Conv2D 'conv2d' expects an NCHW .* got f32\[batch,3\]"):
            conv(g.input("x", ("batch", 3)))
        with pytest.raises(ShapeError, match="concrete feature size"):
            dense(g.input("s", ("batch", "features")))
        with pytest.raises(DTypeError, match="needs a float input"):
            bn(g.input("i", ("batch", 3), "int64"))
        net = nn.Sequential([nn.Dense(3), nn.Conv2D(2, 3)])
        with pytest.raises(ShapeError):
            net(g.input("v", ("batch", 3)))
    assert g.params == {} and g.values == {} and g.updates == {}
    assert not conv.built and not net.built and not net[0].built


def test_batchnorm_training_call_once_per_graph():
    bn = nn.BatchNorm()
    with gc.Graph("e") as g:
        x = g.input("x", ("batch", 3))
        bn(x, training=True)
        bn(x, training=False)  # evaluation calls are fine
        with pytest.raises(GraphStructureError, match="already called with training=True"):
            bn(x, training=True)


def test_functional_dense_lambda_and_nested_sequential():
    inner = nn.Sequential([nn.Dense(3), lambda v: v * 2.0], name="inner")
    outer = nn.Sequential([inner, nn.Activation("relu")], name="outer")
    with gc.Graph("f") as g:
        x = g.input("x", ("batch", 4), "float64")
        h = nn.dense(x, 5, activation="tanh")
        y = outer(h)
    assert set(outer.params) == {"outer/inner/dense/w", "outer/inner/dense/b"}
    xv = RNG.standard_normal((2, 4))
    hv = np.tanh(xv @ g.values["dense/w"])
    want = np.maximum(2.0 * (hv @ g.values["outer/inner/dense/w"]), 0)
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=y), want, rtol=1e-12)
