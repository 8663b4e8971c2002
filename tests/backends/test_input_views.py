"""A transpose of a fed array runs as an InputView step (numba/steps.py): the view made at one
call is the value again while the same array is fed, and shows that array's current data."""

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba.steps import InputView  # noqa: E402


def test_a_fed_arrays_view_is_kept_for_the_same_array_and_shows_its_current_data():
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    with gc.Graph("xt") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 4), init=w0)
        y = g.output("y", gc.transpose(x) @ (x @ w))  # x^T used as an operand: a view of the feed
    exe = gc.compile(g, "numba", outputs=[y])
    ref = gc.compile(g, "reference", outputs=[y])
    x1 = rng.standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(exe(x=x1)[0], ref(x=x1)[0], rtol=1e-5, atol=1e-6)
    (step,) = [st for st in next(iter(exe.runtimes.values())).steps if isinstance(st, InputView)]
    kept = step.out
    assert kept is not None and np.shares_memory(kept, x1)
    x1 *= 2  # the same array, new data: the kept view shows it
    np.testing.assert_allclose(exe(x=x1)[0], ref(x=x1)[0], rtol=1e-5, atol=1e-6)
    assert step.out is kept
    x2 = rng.standard_normal((5, 3)).astype(np.float32)  # another array: its own view
    np.testing.assert_allclose(exe(x=x2)[0], ref(x=x2)[0], rtol=1e-5, atol=1e-6)
    assert np.shares_memory(step.out, x2) and not np.shares_memory(step.out, x1)


def test_a_result_that_is_a_copy_is_made_again_at_every_call():
    with gc.Graph("flat") as g:
        x = g.input("x", (4, 3))
        y = g.output("y", gc.reshape(gc.transpose(x), (12,)) * 2.0)  # reshaping a transposed view copies
    exe = gc.compile(g, "numba", outputs=[y])
    x1 = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(exe(x=x1)[0], 2 * x1.T.reshape(-1))
    views = [st for st in next(iter(exe.runtimes.values())).steps if isinstance(st, InputView)]
    assert any(st.node.op == "reshape" for st in views)
    assert all(st.out is None for st in views if st.node.op == "reshape")  # a copy: not kept
    x1 += 1  # the same array, new data
    np.testing.assert_array_equal(exe(x=x1)[0], 2 * x1.T.reshape(-1))
