"""Compiled (numba) recurrent layers equal the reference interpreter, values and gradients, with
their scans run as native loops; the lengths check fails the same way compiled."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import IndexRangeError


def _compare(build, feeds, grads=True, rtol=2e-5, atol=2e-6):
    with gc.Graph("numba_rnn") as g:
        outs = build(g)
        loss = sum(gc.sum(o * o) for o in outs)
        outs = [*outs, *(gc.grad(loss, [g.inputs["x"], *g.trainable().values()]) if grads else [])]
    ref = gc.compile(g, "reference", outputs=outs)(feeds)
    step = gc.compile(g, "numba", outputs=outs)
    got = step(feeds)
    for o, a, b in zip(outs, got, ref):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=o.label)
    loops = [line for line in step.summary().splitlines() if ": native loop" in line or ": reference loop" in line]
    assert loops and all("native loop" in line for line in loops), loops
    return step


def test_masked_bidirectional_lstm_compiled_equals_reference():
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((3, 5, 4)).astype(np.float32), "n": np.array([5, 2, 0], np.int32)}

    def build(g):
        x, n = g.input("x", ("batch", 5, 4)), g.input("n", ("batch",), "int32")
        with nn.sequence_lengths(n):
            y, (h, c) = nn.LSTM(3, bidirectional=True, return_sequences=True, return_state=True)(x)
        return [y, h, c]

    step = _compare(build, feeds)
    with pytest.raises(IndexRangeError, match=r"LSTM 'lstm': sequence lengths must lie in \[0, 5\].*got 6 at \(1,\)"):
        step({**feeds, "n": np.array([5, 6, 0], np.int32)})


def test_gru_compiled_equals_reference():  # values: its backward runs the same native machinery as the LSTM's
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 6, 3)).astype(np.float32)}

    def build(g):
        y, h = nn.GRU(4, return_sequences=True, return_state=True)(g.input("x", ("batch", 6, 3)))
        return [y, h]

    _compare(build, feeds, grads=False)
