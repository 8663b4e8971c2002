"""Every op that takes an axis refuses a bad one (a float, a string, out of range) with an
AttributeValueError naming the op, the axis, the input's type and the user's line; NumPy
integers are axes too."""

import re
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import AttributeValueError

FILE = "test_axis_checks.py"


def here() -> int:
    return sys._getframe(1).f_lineno + 1


# op name -> a call on x: f32[2,3] (and labels lab: i64[2]) with the axis argument `a`
CALLS = {
    "sum": lambda x, lab, a: gc.sum(x, axis=a),
    "mean": lambda x, lab, a: gc.mean(x, axis=a),
    "max": lambda x, lab, a: gc.max(x, axis=a),
    "argmax": lambda x, lab, a: gc.argmax(x, axis=a),
    "softmax": lambda x, lab, a: gc.softmax(x, axis=a),
    "log_softmax": lambda x, lab, a: gc.log_softmax(x, axis=a),
    "concat": lambda x, lab, a: gc.concat([x, x], axis=a),
    "split": lambda x, lab, a: gc.split(x, 1, axis=a),
    "stack": lambda x, lab, a: gc.stack([x, x], axis=a),
    "take": lambda x, lab, a: gc.take(x, [0], axis=a),
    "one_hot": lambda x, lab, a: gc.one_hot(lab, 3, axis=a),
    "cross_entropy": lambda x, lab, a: gc.cross_entropy(x, lab, axis=a),
    "entropy": lambda x, lab, a: gc.entropy(x, axis=a),
    "flatten": lambda x, lab, a: gc.flatten(x, a),
    "expand_dims": lambda x, lab, a: gc.expand_dims(x, a),
    "squeeze": lambda x, lab, a: gc.squeeze(x, axis=a),
    "swapaxes": lambda x, lab, a: gc.swapaxes(x, a, 0),
    "transpose": lambda x, lab, a: gc.transpose(x, (a, 0)),
    "slice": lambda x, lab, a: gc.slice(x, [0], [1], axes=[a]),
}


@pytest.mark.parametrize("op", list(CALLS))
@pytest.mark.parametrize("axis, said", [(1.0, "got 1.0 (float)"), ("a", "got 'a' (str)"), (True, "got True (bool)"),
                                        (7, "axis 7 is out of range for rank")])  # fmt: skip
def test_bad_axis_names_the_op_the_axis_and_the_line(op, axis, said):
    with gc.Graph("axes") as g:
        x = g.input("x", (2, 3))
        labels = g.input("l", (2,), "int64")
        before = len(g.nodes)
        with pytest.raises(AttributeValueError) as e:
            CALLS[op](x, labels, axis)
    msg = str(e.value)
    assert msg.startswith(f"{op}: ") and said in msg and re.search(r"\([a-z ]+ (f32\[2,3\]|i64\[2\])\)", msg), msg
    if axis != 7:  # one-axis ops say "an int"; reductions and squeeze also take None or a tuple
        assert re.match(rf"{op}: axis must be (an int|None, an int or a tuple of ints), got", msg), msg
    line = CALLS[op].__code__.co_firstlineno  # the user's line is the one calling the op
    assert msg.endswith(f"(declared at tests/ops/{FILE}:{line})"), msg
    assert all(n.op == "const" for n in g.nodes[before:])  # no op node was half-built


def test_reduction_axes_must_be_ints_or_a_tuple_of_ints():
    with gc.Graph("sum") as g:
        x = g.input("x", (2, 3))
        with pytest.raises(
            AttributeValueError,
            match=r"^sum: axis must be None, an int or a tuple of ints, got 1\.0 \(float\) \(input f32\[2,3\]\)",
        ):
            gc.sum(x, axis=1.0)  # was TypeError: 'float' object is not iterable
        with pytest.raises(
            AttributeValueError, match=r"^mean: axis must be None, an int or a tuple of ints, got \{0\} \(set\)"
        ):
            gc.mean(x, axis={0})
        with pytest.raises(AttributeValueError, match=r"^sum: axis must be an int, got 0\.5 \(float\)"):
            gc.sum(x, axis=(0, 0.5))
        with pytest.raises(
            AttributeValueError, match=r"^squeeze: axis must be None, an int or a tuple of ints, got 1\.0"
        ):
            gc.squeeze(x, axis=1.0)
        with pytest.raises(AttributeValueError, match=r"^transpose: perm must be a tuple of axes, got 1"):
            gc.transpose(x, 1)
        with pytest.raises(AttributeValueError, match=r"^slice: starts must be a tuple or list, got 0"):
            gc.slice(x, 0, 1)
        # NumPy integers are axes
        s = gc.sum(x, axis=np.int64(1))
        m = gc.mean(x, axis=(np.int32(0), 1))
        t = gc.transpose(x, (np.int64(1), 0))
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = gc.run(g, {"x": xv}, outputs=[s, m, t])
    np.testing.assert_array_equal(got[0], xv.sum(1))
    np.testing.assert_allclose(got[1], xv.mean())
    np.testing.assert_array_equal(got[2], xv.T)


def test_transpose_refuses_out_of_range_axes_it_used_to_wrap():
    with gc.Graph("t") as g:
        x = g.input("x", (2, 3))
        with pytest.raises(AttributeValueError, match=r"^transpose: axis 3 is out of range for rank 2"):
            gc.transpose(x, (0, 3))  # was (0, 1) silently: 3 % 2
