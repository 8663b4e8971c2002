"""Values a dtype cannot hold are refused at declaration (never wrapped, truncated or made inf):
constants, full_like and parameter initial values; errors name the op, the value, the dtype
and the user's line."""

import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import AttributeValueError, DTypeError

FILE = "test_value_checks.py"


def here() -> int:
    return sys._getframe(1).f_lineno + 1


@pytest.mark.parametrize(
    "value, dtype, shown",
    [
        (2**40, "int32", "1099511627776"),  # was silently 0
        (2**70, "int64", "1180591620717411303424"),  # was a raw OverflowError
        ([1, 2**31], "int32", "2147483648"),
        (np.array([2**63], np.uint64), "int64", "9223372036854775808"),
        (float("inf"), "int32", "inf"),
        (float("nan"), "int64", "nan"),
        (1.5, "int32", "1.5"),
        (1e39, "float32", "1e+39"),
        (2, "bool", "2"),
    ],
)
def test_constant_that_does_not_fit_its_dtype(value, dtype, shown):
    with gc.Graph("c"):
        with pytest.raises(DTypeError) as e:
            line = here()
            gc.constant(value, dtype)
    assert str(e.value) == f"const: value {shown} does not fit {dtype} (declared at tests/ops/{FILE}:{line})"


def test_python_int_beyond_int64_without_a_dtype():
    with gc.Graph("big"):
        msg = rf"^const: value {2**70} does not fit int64 \(declared at .*{FILE}:\d+\)$"
        with pytest.raises(DTypeError, match=msg):
            gc.constant(2**70)


def test_constant_values_round_trip():
    with gc.Graph("vals") as g:
        values = [(2**40, "int64"), (2.0**31 - 1, "int32"), (1e38, "float32"), (float("inf"), "float32"),
                  ([1, 0], "bool"), (3.0, "int64")]  # fmt: skip
        nodes = [gc.constant(v, dt) for v, dt in values]
    got = gc.run(g, outputs=nodes)
    want = [2**40, 2**31 - 1, np.float32(1e38), np.inf, [True, False], 3]
    for n, v, w in zip(nodes, got, want):
        assert v.dtype == n.dtype
        np.testing.assert_array_equal(v, w)


@pytest.mark.parametrize("shape", [(3,), ("batch",)])
def test_full_like_refuses_a_value_its_dtype_cannot_hold(shape):
    with gc.Graph("f") as g:
        k = g.input("k", shape, "int32")
        with pytest.raises(DTypeError) as e:
            line = here()
            gc.full_like(k, float("inf"))  # was -2147483648 with a NumPy warning
        assert str(e.value) == f"full_like: value inf does not fit int32 (declared at tests/ops/{FILE}:{line})"
        with pytest.raises(DTypeError, match=r"^full_like: value 4294967296 does not fit int32"):
            gc.full_like(k, 2**32)
        ok = gc.full_like(k, 7.0)
    np.testing.assert_array_equal(gc.run(g, {"k": [1, 2, 3]}, outputs=ok), [7, 7, 7])


def test_param_initial_values_are_numbers_that_fit():
    with gc.Graph("p") as g:
        with pytest.raises(AttributeValueError) as e:
            line = here()
            g.param("w", (2,), init=np.array([object(), 1.0], dtype=object))
        msg = str(e.value)
        assert msg == (f"parameter 'w' (declared at tests/ops/{FILE}:{line}): initial value has dtype object; "
                       "expected numbers (bool, int or float) for float32")  # fmt: skip
        too_big = r"^parameter 'n' .*: initial value 4294967296 does not fit int32$"
        with pytest.raises(AttributeValueError, match=too_big):
            g.param("n", (2,), init=np.array([1, 2**32]), dtype="int32")
        with pytest.raises(AttributeValueError, match=r"^parameter 's' .*: initial value has dtype <U1"):
            g.param("s", (2,), init=np.array(["a", "b"]))
        with pytest.raises(AttributeValueError, match=r"^parameter 'r' .*: initial value is not an array of numbers"):
            g.param("r", (2,), init=[[1.0], [2.0, 3.0]])
        assert not g.params  # nothing half-declared
        g.param("ok", (2,), init=np.array([3, 4]), dtype="int32")
    np.testing.assert_array_equal(g.values["ok"], [3, 4])
