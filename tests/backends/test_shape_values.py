"""A value that depends only on shapes (shape_size of a symbolic dim) is computed once per shape
specialisation of the numba runtime, not by a step at every call (numba/runtime.py)."""

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba.steps import Reference  # noqa: E402


def _mean_graph():
    with gc.Graph("means") as g:
        x = g.input("x", ("batch", 3))
        n = gc.shape_size(x, 0)  # symbolic: an op, not a constant
        y = g.output("y", gc.sum(x, axis=0) / n)
        size = g.output("n", n * 2.0)
    return g, y, size, n


def test_a_shape_only_value_is_bound_once_per_specialisation_and_right_for_each():
    g, y, size, n = _mean_graph()
    exe = gc.compile(g, "numba", outputs=[y, size])
    for batch in (4, 7, 4):
        x = np.random.default_rng(batch).standard_normal((batch, 3)).astype(np.float32)
        got_y, got_n = exe(x=x)
        np.testing.assert_allclose(got_y, x.mean(axis=0), rtol=1e-5)
        assert float(got_n) == 2 * batch
    assert len(exe.runtimes) == 2
    for rt in exe.runtimes.values():
        refs = [st for st in rt.steps if isinstance(st, Reference)]
        assert not any(st.node.op == "shape_size" for st in refs)
        folded = rt.static[n.id]
        assert not folded.flags.writeable  # shared by every call: nobody may write it


def test_a_shape_only_output_is_still_the_callers_own_array():
    with gc.Graph("size") as g:
        x = g.input("x", ("batch", 2))
        n = g.output("n", gc.shape_size(x, 0))
    exe = gc.compile(g, "numba", outputs=[n])
    first = exe(x=np.zeros((5, 2), np.float32))[0]
    assert float(first) == 5
    first[...] = 99  # the caller's array: the next call is not affected
    assert float(exe(x=np.zeros((5, 2), np.float32))[0]) == 5
