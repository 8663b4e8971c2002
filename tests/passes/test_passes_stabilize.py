"""Numerical stabilization: large inputs give finite, correct values (and gradients) after the pass."""

import numpy as np
import pytest
from passcheck import assert_same, live_ops, results

import graphc as gc
from graphc.passes import STABILIZE_RULES, dce, optimize, stabilize

rng = np.random.default_rng(2)
N, C = 4, 5
ONEHOT = np.eye(C, dtype=np.float32)[rng.integers(0, C, N)]


def _stable_softmax(x):
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _build(f, shape=(N, C)):
    """y = f(x, onehot) with dy/dx as a second output."""
    g = gc.Graph("stab")
    with g:
        x = g.input("x", shape, "float64")
        t = g.input("t", (N, C), "float64")
        y = f(x, t)
        g.output("y", y)
        g.output("gx", gc.grad(gc.sum(y), x))
    return g


def _check(g, big_feeds, expect_y, expect_gx, small_feeds):
    before = results(g, big_feeds)
    assert not (np.all(np.isfinite(before["y"])) and np.all(np.isfinite(before["gx"])))
    g2 = optimize(g)
    after = results(g2, big_feeds)
    assert np.all(np.isfinite(after["y"])) and np.all(np.isfinite(after["gx"]))
    np.testing.assert_allclose(after["y"], expect_y, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(after["gx"], expect_gx, rtol=1e-9, atol=1e-9)
    assert_same(g, g2, small_feeds, rtol=1e-9, atol=1e-12)  # unchanged where the old form was fine
    return g2


def _feeds(scale):
    return {"x": rng.standard_normal((N, C)) * scale, "t": ONEHOT.astype(np.float64)}


def test_softmax_cross_entropy_by_hand_becomes_log_softmax_and_softmax_minus_onehot():
    g = _build(lambda x, t: -gc.sum(t * gc.log(gc.softmax(x)), axis=1))
    big = _feeds(1e4)
    x = big["x"]
    g2 = _check(g, big, -(ONEHOT * _log_softmax(x)).sum(1), _stable_softmax(x) - ONEHOT, _feeds(1.0))
    ops = live_ops(g2)
    assert "log_softmax" in ops and "log" not in ops and "div" not in ops


def test_mean_cross_entropy_through_a_dense_layer_trains_with_large_logits():
    g = gc.Graph("ce")
    with g:
        x = g.input("x", ("batch", 3), "float64")
        t = g.input("t", ("batch", C), "float64")
        w = g.param("w", (3, C), dtype="float64")
        loss = gc.mean(-gc.sum(t * gc.log(gc.softmax(x @ w)), axis=1))
        g.output("loss", loss)
        g.update("w", w - 0.1 * gc.grad(loss, w))
    feeds = {"x": rng.standard_normal((N, 3)) * 1e4, "t": ONEHOT.astype(np.float64)}
    assert np.isnan(results(g, feeds)["loss"])
    g2 = optimize(g)
    out = results(g2, feeds)
    logits = feeds["x"] @ g.values["w"]
    np.testing.assert_allclose(out["loss"], -(ONEHOT * _log_softmax(logits)).sum(1).mean(), rtol=1e-9)
    gw = feeds["x"].T @ (_stable_softmax(logits) - ONEHOT) / N
    np.testing.assert_allclose(out["update:w"], g.values["w"] - 0.1 * gw, rtol=1e-9, atol=1e-6)


def test_log_sigmoid():
    g = _build(lambda x, t: gc.log(gc.sigmoid(x)))
    big = {"x": -np.abs(_feeds(1e4)["x"]) - 1e3, "t": ONEHOT.astype(np.float64)}  # sigmoid underflows to 0
    x = big["x"]
    g2 = _check(g, big, x - np.log1p(np.exp(x)), 1.0 / (1.0 + np.exp(x)), _feeds(1.0))
    assert "softplus" in live_ops(g2) and "div" not in live_ops(g2)


def test_log_one_plus_exp_is_softplus():
    g = _build(lambda x, t: gc.log(1.0 + gc.exp(x)))
    big = {"x": np.abs(_feeds(1e4)["x"]) + 1e3, "t": ONEHOT.astype(np.float64)}  # exp overflows
    x = big["x"]
    g2 = _check(g, big, x + np.log1p(np.exp(-x)), 1.0 / (1.0 + np.exp(-x)), _feeds(1.0))
    assert live_ops(g2)[0] == "softplus" and "exp" not in live_ops(g2)


@pytest.mark.parametrize("keepdims", [False, True])
def test_log_sum_exp(keepdims):
    g = _build(lambda x, t: gc.log(gc.sum(gc.exp(x), axis=1, keepdims=keepdims)))
    big = _feeds(1e4)
    x = big["x"]
    m = x.max(1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(1, keepdims=True))
    _check(g, big, lse if keepdims else lse[:, 0], _stable_softmax(x), _feeds(1.0))


def test_hand_written_softmax_forward():
    g = gc.Graph("hs")
    with g:
        x = g.input("x", (N, C), "float64")
        e = gc.exp(x)
        s = e / gc.sum(e, axis=1, keepdims=True)
        g.output("s", s)
        g.output("logs", gc.log(s))
    big = {"x": _feeds(1e4)["x"]}
    assert np.isnan(results(g, big)["s"]).any()
    g2 = dce(stabilize(g))
    assert live_ops(g2) == ["softmax", "log_softmax"]
    out = results(g2, big)
    np.testing.assert_allclose(out["s"], _stable_softmax(big["x"]), rtol=1e-12)
    np.testing.assert_allclose(out["logs"], _log_softmax(big["x"]), rtol=1e-12)
    assert_same(g, g2, {"x": big["x"] * 1e-4}, rtol=1e-12)


def test_float32_cross_entropy_gradient_is_softmax_minus_onehot():
    g = gc.Graph("f32")
    with g:
        x = g.input("x", (N, C))
        t = g.input("t", (N, C))
        loss = -gc.sum(t * gc.log(gc.softmax(x)))
        g.output("gx", gc.grad(loss, x))
    feeds = {"x": (rng.standard_normal((N, C)) * 1e4).astype("f4"), "t": ONEHOT}
    assert np.isnan(results(g, feeds)["gx"]).any()
    gx = results(optimize(g), feeds)["gx"]
    np.testing.assert_allclose(gx, _stable_softmax(feeds["x"].astype("f8")) - ONEHOT, atol=1e-6)


def test_stabilize_leaves_other_graphs_alone():
    with gc.Graph("o") as g:
        x = g.input("x", (3,))
        g.output("y", gc.log(gc.exp(x) + 2.0) * gc.sigmoid(x) / gc.exp(x))
    assert live_ops(dce(stabilize(g))) == live_ops(g)


def test_rules_are_a_table_keyed_by_op():
    from graphc.ops.registry import all_ops

    assert set(STABILIZE_RULES) <= set(all_ops())
