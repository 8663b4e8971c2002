"""One keyword for axes: `axis` on every op function, as in NumPy; the ops over several axes
(sum, mean, max, min, squeeze, slice) take it as `axes=` too, the name their node attribute
prints with (`sum(%3, axes=(0, 1))`), so what the text form shows can be typed back."""

import inspect
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import AttributeValueError
from graphc.ops import api

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5
MULTI = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def _run(build):
    with gc.Graph("k") as g:
        x = g.input("x", X.shape)
        out = build(x)
    return gc.run(g, {"x": X}, outputs=out), out


@pytest.mark.parametrize("op", list(MULTI))
@pytest.mark.parametrize("axes", [1, (0, 2), None, (-1,)])
def test_reductions_take_axis_or_axes(op, axes):
    fn = getattr(gc, op)
    by_axis, a = _run(lambda x: fn(x, axis=axes, keepdims=True))
    by_axes, b = _run(lambda x: fn(x, axes=axes, keepdims=True))
    np.testing.assert_array_equal(by_axis, MULTI[op](X, axis=axes, keepdims=True))
    np.testing.assert_array_equal(by_axes, by_axis)
    assert a.op == b.op and a.attrs.key() == b.attrs.key()  # the same node either way


def test_the_text_forms_spelling_is_a_call_that_works():
    got, node = _run(lambda x: gc.sum(x, axes=(0, 1), keepdims=False))
    assert "axes=(0, 1)" in node.graph.text()
    np.testing.assert_array_equal(got, X.sum(axis=(0, 1)))


def test_squeeze_takes_axis_or_axes():
    y = X[:, :1, :]
    with gc.Graph("s") as g:
        x = g.input("x", y.shape)
        a, b = gc.squeeze(x, axis=1), gc.squeeze(x, axes=(1,))
    assert a.shape == b.shape == (2, 4)
    np.testing.assert_array_equal(gc.run(g, {"x": y}, outputs=b), y.squeeze(1))


def test_slice_takes_axis_and_keeps_axes():
    want = X[::-1, :, 1:-1:2]
    by_axis, _ = _run(lambda x: gc.slice(x, [-1, 1], [None, -1], [-1, 2], axis=[0, 2]))
    by_axes, _ = _run(lambda x: gc.slice(x, [-1, 1], [None, -1], [-1, 2], axes=[0, 2]))
    positional, _ = _run(lambda x: gc.slice(x, [-1, 1], [None, -1], [-1, 2], [0, 2]))
    for got in (by_axis, by_axes, positional):
        np.testing.assert_array_equal(got, want)


# each op called with both spellings at once, on x: f32[1,1]
BOTH = {
    "sum": lambda x: gc.sum(x, axis=0, axes=(1,)),
    "mean": lambda x: gc.mean(x, axis=0, axes=(1,)),
    "max": lambda x: gc.max(x, axis=0, axes=(1,)),
    "min": lambda x: gc.min(x, axis=0, axes=(1,)),
    "squeeze": lambda x: gc.squeeze(x, axis=0, axes=(1,)),
    "slice": lambda x: gc.slice(x, [0], [1], axis=[0], axes=(1,)),
}


@pytest.mark.parametrize("op", list(BOTH))
def test_axis_and_axes_together_is_an_error_naming_both_and_the_line(op):
    with gc.Graph("e") as g:
        x = g.input("x", (1, 1))
        with pytest.raises(AttributeValueError) as e:
            BOTH[op](x)
    msg, line = str(e.value), BOTH[op].__code__.co_firstlineno
    assert re.match(rf"^{op}: give axis or its alias axes, not both \(axis=\[?0\]?, axes=\(1,\)\)", msg), msg
    assert msg.endswith(f"(declared at tests/ops/test_axis_keywords.py:{line})"), msg
    assert len(g.nodes) == 1  # nothing was added


def test_min_names_itself_for_a_bad_axis_and_adds_no_node():
    with gc.Graph("m") as g:
        x = g.input("x", (2, 3))
        with pytest.raises(AttributeValueError, match=r"^min: axis 5 is out of range for rank 2"):
            gc.min(x, axes=5)
    assert len(g.nodes) == 1


def test_every_op_function_names_its_axis_axis():
    """No public op takes `axes` without also taking `axis` (slice took only axes=)."""
    only_axes, with_axis = [], []
    for name in sorted(set(dir(api))):
        fn = getattr(api, name)
        if not inspect.isfunction(fn) or name.startswith("_"):
            continue
        params = inspect.signature(fn).parameters
        if "axes" in params and "axis" not in params:
            only_axes.append(name)
        if "axis" in params:
            with_axis.append(name)
    assert only_axes == []
    assert {"sum", "argmax", "softmax", "log_softmax", "slice", "squeeze", "concat", "take"} <= set(with_axis)
