"""Hypothesis: random scans and their gradients, compiled with Numba, match the reference.

The body is a random program of tests/backends/test_random_graphs.py's ops over a pool holding
the carry, the x-slice, a captured parameter and a captured input; the new carry mixes the
program's last value back into the carry's shape. The length (0 included), the direction and
the shapes are drawn too. The graph outputs the final carry, the stacked ys, the loss and the
gradient with respect to xs, and updates the parameter with its gradient (a reverse scan).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc

pytest.importorskip("numba")

from tests.backends.test_random_graphs import ATOL, OPS, RTOL, SETTINGS, SIZES, program  # noqa: E402


def build(steps, length, reverse, m, n):
    g = gc.Graph("random_scan")
    with g:
        xs = g.input("xs", (length, m, n))
        h0 = g.input("h0", (m, n))
        v = g.input("v", (n,))
        w = g.param("w", (n, n), init="normal")

        def body(h, x):
            pool = [h, x, w, v]
            for op, i, j, k in steps:
                pool.append(OPS[op](pool[i % len(pool)], pool[j % len(pool)], k))
            last = pool[-1]
            mixed = last if last.shape == h.shape else gc.mean(last)
            return gc.tanh(0.5 * h + 0.5 * mixed + x), last

        h, ys = gc.scan(body, h0, xs, reverse=reverse)
        loss = gc.sum(gc.tanh(ys)) + gc.mean(h * h)
        g.output("h", h)
        g.output("ys", ys)
        g.output("loss", loss)
        gxs, gw = gc.grad(loss, [xs, w])
        g.output("gxs", gxs)
        g.update("w", w - 0.1 * gw)
    return g


@settings(max_examples=25, **SETTINGS)
@given(program, st.sampled_from([0, 1, 3]), st.booleans(), st.sampled_from(SIZES), st.sampled_from(SIZES),
       st.integers(0, 2**16))  # fmt: skip
def test_random_scans_and_their_gradients_compiled_match_reference(steps, length, reverse, m, n, seed):
    g, gr = build(steps, length, reverse, m, n), build(steps, length, reverse, m, n)
    exe, ref = gc.compile(g, "numba"), gc.compile(gr, "reference")
    rng = np.random.default_rng(seed)
    f32 = np.float32
    feeds = {"xs": rng.standard_normal((length, m, n)).astype(f32), "h0": rng.standard_normal((m, n)).astype(f32),
             "v": rng.standard_normal(n).astype(f32)}  # fmt: skip
    for call in range(2):  # the second call runs on the updated parameter
        want, got = ref(feeds), exe(feeds)
        for k in want:
            assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
            np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL, err_msg=f"{k} call {call}")
        np.testing.assert_allclose(g.values["w"], gr.values["w"], rtol=RTOL, atol=ATOL)
