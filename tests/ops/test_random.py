"""Dropout: deterministic per (seed, step), identity in eval, gradient through the mask, errors."""

import inspect

import numpy as np
import pytest
from gradcheck import check_grad

import graphc as gc
from graphc.ops.registry import get

X = np.random.default_rng(0).uniform(1.0, 2.0, (40, 50))  # no zeros: mask = out / x


def _graph(p=0.3, seed=0, shape=(40, 50), training=True):
    with gc.Graph() as g:
        x = g.input("x", shape, "float64")
        y = gc.dropout(x, p, seed=seed, training=training)
    return g, x, y


def test_mask_matches_numpy_rng_for_seed_and_step():
    g, x, y = _graph(p=0.3, seed=7)
    step = gc.compile(g, outputs=y)
    for k in range(3):
        out = step(x=X)
        keep = np.random.default_rng([7, k]).random(X.shape) >= 0.3
        np.testing.assert_allclose(out, np.where(keep, X / 0.7, 0.0), rtol=1e-12)


def test_masks_differ_between_steps_and_seeds_but_repeat_per_compile():
    g, x, y = _graph(p=0.5, seed=1)
    first = gc.compile(g, outputs=y)
    a, b = first(x=X), first(x=X)
    assert (a == 0).mean() == pytest.approx(0.5, abs=0.05)
    assert not np.array_equal(a == 0, b == 0)
    again = gc.compile(g, outputs=y)
    np.testing.assert_array_equal(again(x=X), a)
    np.testing.assert_array_equal(again(x=X), b)
    g2, _, y2 = _graph(p=0.5, seed=2)
    assert not np.array_equal(gc.run(g2, {"x": X}, outputs=y2) == 0, a == 0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_scaling(p):
    g, x, y = _graph(p=p, seed=3)
    out = gc.run(g, {"x": X}, outputs=y)
    kept = out != 0
    assert (~kept).mean() == pytest.approx(p, abs=0.03)
    np.testing.assert_allclose(out[kept], X[kept] / (1 - p), rtol=1e-12)


def test_identity_in_eval_and_at_p_zero():
    g, x, y = _graph(training=False)
    assert y is x
    g, x, y = _graph(p=0.0)
    assert y is x


def test_gradient_flows_through_the_multiply_only():
    # gc.run starts at step 0 each time, so finite differences see one fixed mask
    check_grad(lambda x: gc.dropout(x * x, 0.4, seed=5), {"x": X[:3, :4]})
    g, x, y = _graph(p=0.4, seed=5, shape=("batch", 50))
    gx = gc.grad(gc.sum(y), x)
    out, grad = gc.run(g, {"x": X}, outputs=[y, gx])
    np.testing.assert_allclose(grad, out / X)
    mask = get("dropout_mask")
    assert mask.random and not mask.differentiable


@pytest.mark.parametrize("kwargs,msg", [
    ({"p": 1.0}, r"p must be a number in \[0, 1\), got 1.0"),
    ({"p": -0.1}, r"got -0.1"),
    ({"p": "0.5"}, r"got '0.5'"),
    ({"p": True}, r"got True"),
    ({"p": 0.5, "seed": -1}, r"seed must be a non-negative int, got -1"),
    ({"p": 0.5, "seed": 1.5}, r"seed must be a non-negative int, got 1.5"),
])  # fmt: skip
def test_bad_arguments_name_value_and_line(kwargs, msg):
    with gc.Graph() as g:
        x = g.input("x", (3,), "float64")
        line = inspect.currentframe().f_lineno + 2
        with pytest.raises(gc.GraphcError, match=rf"dropout: .*{msg}.*test_random.py:{line}"):
            gc.dropout(x, **kwargs)


def test_integer_input_is_refused():
    with gc.Graph() as g:
        x = g.input("x", (3,), "int64")
        with pytest.raises(gc.DTypeError, match=r"dropout: needs a float input, got i64\[3\].*test_random.py:"):
            gc.dropout(x, 0.5)
