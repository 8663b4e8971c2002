"""numba/scan_split.py: a native loop run in parts over its batch rows, one thread each.

The parts' values and gradients equal the reference interpreter's, side by side and in turn;
a per-step sum over the batch (a GRU's bias gradient) is the sum of the parts' sums; loops that
mix rows, or have too few, stay whole; and the products of a runtime with such a loop run on
graphc's threads (blas.own_threads), block by block, to the same values.
"""

import numpy as np
import pytest
from lstm_cell import lstm_cell

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba import accumulate, batch_split, blas, scan_split  # noqa: E402
from graphc.backends.numba.scan_loop import NativeScan  # noqa: E402
from graphc.backends.numba.scan_split import SplitScan  # noqa: E402

T, B, D, H = 5, 8, 3, 4


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of 2 rows and any size, on 2 cores (the tests' shapes are small), BLAS threads fixed
    (the runtime's tuner then always picks side by side)."""
    monkeypatch.setattr(scan_split, "MIN_ROWS", 2)
    monkeypatch.setattr(scan_split, "MIN_PART_ELEMENTS", 0)
    monkeypatch.setattr(blas, "cores", lambda: 2)
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "2")
    monkeypatch.delenv("GRAPHC_SCAN_PARTS", raising=False)


def lstm_training(batch=B, dtype="float64"):
    g = gc.Graph("lstm")
    with g:
        xs = g.input("xs", (T, batch, D), dtype)
        w = g.input("w", (D, 4 * H), dtype)
        u = g.input("u", (H, 4 * H), dtype)

        zeros = gc.constant(np.full((batch, H), 0.1), dtype)
        (h, _), hs = gc.scan(lstm_cell(w, u), (zeros, zeros), xs)
        loss = gc.sum(h * h) + gc.mean(hs * hs)
    return g, [loss, *gc.grad(loss, [xs, w, u])]


def feeds(seed, batch=B, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = {"xs": (T, batch, D), "w": (D, 4 * H), "u": (H, 4 * H)}
    return {k: (rng.standard_normal(s) * 0.5).astype(dtype) for k, s in shapes.items()}


def runs(exe, kind):
    return [st.fn for st in exe.runtime().steps if isinstance(getattr(st, "fn", None), kind)]


def check(exe, ref, f, rtol=1e-10):
    for x, y in zip(exe(f), ref(f)):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("threads", ["2", "1"])  # side by side, then in turn
def test_an_lstm_training_step_in_two_parts_equals_the_reference(small_parts, monkeypatch, threads):
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", threads)
    g, outs = lstm_training()
    exe = gc.compile(g, "numba", outputs=outs)
    ref = gc.compile(g, "reference", outputs=outs)
    for seed in (1, 2, 3):
        check(exe, ref, feeds(seed))
    fwd, back = runs(exe, SplitScan)
    real, pairs = SplitScan.into, []

    def into(self, outs, *ins):  # the step's call, then the same loop called on its own
        real(self, outs, *ins)
        SplitScan.into = real
        try:
            pairs.append(([o.copy() for o in outs], self(*[np.array(x) for x in ins])))
        finally:
            SplitScan.into = into

    SplitScan.into = into
    try:
        exe(feeds(4))
    finally:
        SplitScan.into = real
    assert len(pairs) == 2
    for outs, own in pairs:  # a loop in parts called on its own returns the same values
        for a, b in zip(own, outs):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    assert not runs(exe, NativeScan) and exe.runtime().own_threads
    for fn in (fwd, back):
        assert fn.fallback is None and len(fn.parts) == 2 and fn.rows == B // 2
        assert all(p.loop.body.inputs[0].shape == (B // 2, H) for p in fn.parts)
    assert "in 2 parts of 4 batch rows" in exe.summary()


def test_the_parts_index_the_whole_stacked_arrays_from_their_rows_start(small_parts):
    """No copy in or out: both parts get the stacked inputs and outputs themselves, with where
    their rows start in each step, and views of their rows of the carries."""
    g, outs = lstm_training()
    exe = gc.compile(g, "numba", outputs=outs)
    f = feeds(0)
    exe(f)
    seen = []
    real = NativeScan.prepare  # run and the side-by-side parts both bind through it
    patched = lambda self, *a: (seen.append(a), real(self, *a))[1]  # noqa: E731
    NativeScan.prepare = patched
    try:
        exe(f)
    finally:
        NativeScan.prepare = real
    first_loop = sorted(seen[:2], key=lambda a: sum(a[6]))  # the parts ran side by side: either may come first
    (init0, xs0, _, final0, ys0, rs0, at0), (init1, xs1, _, final1, ys1, rs1, at1) = first_loop
    assert xs0[0] is xs1[0] and xs0[0].shape == (T, B, 4 * H)  # x @ w, hoisted: one array for both
    assert all(a is b for a, b in zip(ys0 + rs0, ys1 + rs1))
    assert at0 == [0] * len(at0) and at1 == [(B // 2) * a[0, 0].size for a in xs0 + ys0 + rs0]
    for a, b in zip(init0 + final0, init1 + final1):  # rows 0-3 and 4-7 of one array
        assert a.base is b.base and a.base is not None and not np.shares_memory(a, b)


def test_a_gru_bias_gradient_summed_per_step_is_the_sum_of_the_parts_sums(small_parts):
    nn = gc.nn
    gru = nn.GRU(H)
    with gc.Graph("gru") as g:
        x = g.input("x", (B, T, D))
        loss = g.output("loss", gc.mean(gru(x) ** 2))
    grads = gc.gradients(loss)
    outs = [loss, *grads.values()]
    exe = gc.compile(g, "numba", outputs=outs)
    ref = gc.compile(g, "reference", outputs=outs)
    rng = np.random.default_rng(0)
    for _ in range(2):
        f = {"x": rng.standard_normal((B, T, D)).astype(np.float32)}
        check(exe, ref, f, rtol=2e-4)
    fns = runs(exe, SplitScan)
    assert len(fns) == 2 and any(fn.summed for fn in fns)  # the reverse loop sums dz over its rows


def test_loops_that_cannot_be_cut_stay_whole(small_parts, monkeypatch):
    for batch, parts_env in ((7, None), (B, "1")):  # an odd batch; the switch
        if parts_env:
            monkeypatch.setenv("GRAPHC_SCAN_PARTS", parts_env)
        g, outs = lstm_training(batch)
        exe = gc.compile(g, "numba", outputs=outs)
        ref = gc.compile(g, "reference", outputs=outs)
        check(exe, ref, feeds(4, batch))
        assert not runs(exe, SplitScan) and len(runs(exe, NativeScan)) == 2
    monkeypatch.delenv("GRAPHC_SCAN_PARTS")
    monkeypatch.setattr(scan_split, "MIN_ROWS", 8)  # 8 rows: one part of 8 only
    g, outs = lstm_training()
    assert not runs(gc.compile(g, "numba", outputs=outs), SplitScan)


@pytest.mark.parametrize("m,n", [(40, 6), (6, 40)])
def test_products_on_graphcs_threads_equal_blas_whole(monkeypatch, m, n):
    monkeypatch.setattr(blas, "own_threads", True)
    monkeypatch.setattr(blas, "large", 2)
    monkeypatch.setattr(blas, "SMALL_FLOPS", 0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, 30)), rng.standard_normal((30, n))
    assert batch_split.own_threads(1.0) == 2
    blocks = batch_split.product_blocks(m, n, 2)
    assert len(blocks) == 2 and (blocks[0][0] == slice(None)) == (n > m)
    out = rng.standard_normal((m, n))
    want = 0.5 * a @ b - 2.0 * out
    assert accumulate.gemm(out, a, b, 0.5, -2.0)  # in two blocks, each one gemm
    np.testing.assert_allclose(out, want, rtol=1e-12)
    at = np.asfortranarray(a)
    assert accumulate.gemm(out, at, b, 1.0, 0.0)  # a transposed operand, cut the same way
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)


def test_in_parallel_raises_a_parts_error_and_runs_in_turn_inside_a_worker():
    done = []

    def fail():
        raise ValueError("part failed")

    with pytest.raises(ValueError, match="part failed"):
        batch_split.in_parallel([lambda: done.append(0), fail])
    inner = []
    batch_split.in_parallel([lambda: None, lambda: batch_split.in_parallel([lambda: inner.append(1)] * 3)])
    assert done == [0] and inner == [1, 1, 1]


def test_a_stacked_bidirectional_masked_lstm_with_a_symbolic_batch_runs_in_parts(small_parts):
    """nn.LSTM's scans (both directions, both layers, the mask as an x slice) at a symbolic
    batch bound to 8: every loop in parts, values and gradients the reference's."""
    nn = gc.nn
    lstm = nn.LSTM(H, num_layers=2, bidirectional=True, return_sequences=True)
    with gc.Graph("bilstm") as g:
        x = g.input("x", ("batch", T, D))
        lengths = g.input("lengths", ("batch",), dtype="int64")
        loss = g.output("loss", gc.mean(lstm(x, lengths=lengths) ** 2))
    outs = [loss, *gc.gradients(loss).values()]
    exe = gc.compile(g, "numba", outputs=outs)
    ref = gc.compile(g, "reference", outputs=outs)
    rng = np.random.default_rng(5)
    for _ in range(2):
        f = {"x": rng.standard_normal((B, T, D)).astype(np.float32), "lengths": rng.integers(1, T + 1, B)}
        for a, b in zip(exe(f), ref(f)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    rt = exe.runtime({"batch": B})
    fns = [st.fn for st in rt.steps if isinstance(getattr(st, "fn", None), SplitScan)]
    whole = [st.fn for st in rt.steps if isinstance(getattr(st, "fn", None), NativeScan)]
    assert len(fns) >= 4 and not whole  # 2 layers x 2 directions forward, and their gradients
