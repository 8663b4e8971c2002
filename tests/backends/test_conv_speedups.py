"""The Numba conv/pool fast paths match the reference: the 2x2 max-pool kernels (forward and
gradient) on ties, NaN and infinities anywhere in a window; both layouts of the conv weight
gradient; the forward's columns reused by the weight gradient only when its input is the same."""

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")
from graphc.backends.numba import lowerings_conv  # noqa: E402  (imports numba's kernels lazily)


def _compare(g, outs, feeds_list, rtol=2e-4, atol=2e-5):
    ref = gc.compile(g, "reference", outputs=outs)
    got = gc.compile(g, "numba", outputs=outs)
    for feeds in feeds_list:
        for o, r, v in zip(outs, ref(feeds), got(feeds)):
            np.testing.assert_allclose(v, r, rtol=rtol, atol=atol * max(1.0, float(np.abs(r).max())), err_msg=str(o))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hw", [(6, 8), (7, 5)], ids=["even", "odd"])
def test_2x2_max_pool_routes_ties_nan_and_inf_like_the_reference(dtype, hw):
    rng = np.random.default_rng(3)
    with gc.Graph("pool2") as g:
        x = g.input("x", ("batch", 3, *hw), dtype=dtype)
        y = gc.max_pool2d(x, 2)
        c = gc.constant(rng.standard_normal((1, *y.shape[1:])).astype(dtype))
        (gx,) = gc.grad(gc.sum(y * c), [x])
    ref = gc.compile(g, "reference", outputs=[y, gx])
    got = gc.compile(g, "numba", outputs=[y, gx])
    for _ in range(4):
        # few distinct values: ties in most windows; NaN and +-inf in random positions
        xv = rng.integers(-2, 3, (4, 3, *hw)).astype(dtype)
        pick = rng.random(xv.shape)
        xv[pick < 0.1] = np.nan
        xv[(pick >= 0.1) & (pick < 0.15)] = np.inf
        xv[(pick >= 0.15) & (pick < 0.2)] = -np.inf
        for r, v in zip(ref({"x": xv}), got({"x": xv})):
            np.testing.assert_array_equal(v, r)


@pytest.mark.parametrize(
    "shape,w,kw",
    [
        ((3, 1, 12, 12), (4, 1, 3, 3), {}),  # Ho*Wo 100 >= k 9: gy[n] @ cols[n].T
        ((3, 6, 6, 6), (8, 6, 3, 3), {}),  # Ho*Wo 16 < k 54: cols[n] @ gy[n].T
        ((2, 4, 7, 7), (6, 2, 3, 3), {"groups": 2, "padding": 1}),  # 49 >= 18, two groups
        ((2, 4, 7, 7), (6, 2, 3, 3), {"groups": 2, "stride": 2}),  # 9 < 18, two groups
    ],
)
def test_conv_weight_gradient_in_both_layouts(shape, w, kw):
    rng = np.random.default_rng(5)
    with gc.Graph("wgrad") as g:
        x = g.input("x", ("batch", *shape[1:]))
        wt = g.input("w", w)
        y = gc.conv2d(x, wt, **kw)
        c = gc.constant(rng.standard_normal((1, *y.shape[1:])).astype("float32"))
        (gw,) = gc.grad(gc.sum(y * c), [wt])
    feeds = [{"x": rng.standard_normal(s).astype("float32"), "w": rng.standard_normal(w).astype("float32")}
             for s in (shape, (1, *shape[1:]))]  # fmt: skip
    _compare(g, [y, gw], feeds)


def test_the_weight_gradient_reuses_the_forward_columns_only_for_the_same_input():
    rng = np.random.default_rng(9)
    xv = rng.standard_normal((2, 2, 6, 6)).astype("float32")
    wv = rng.standard_normal((3, 2, 3, 3)).astype("float32")
    with gc.Graph("fwd") as f:
        y = gc.conv2d(f.input("x", (2, 2, 6, 6)), f.input("w", (3, 2, 3, 3)))
    with gc.Graph("wgrad_only") as g:  # no forward conv in this graph: the memo is another graph's
        x = g.input("x", (2, 2, 6, 6))
        wt = g.input("w", (3, 2, 3, 3))
        gy = g.input("gy", (2, 3, 4, 4))
        (gw,) = gc.grad(gc.sum(gc.conv2d(x, wt) * gy), [wt])
    gyv = rng.standard_normal((2, 3, 4, 4)).astype("float32")
    fwd = gc.compile(f, "numba", outputs=[y])
    fwd({"x": xv, "w": wv})  # leaves xv's columns in the memo
    changed = xv.copy()
    changed[1, 1, 5, 5] += 1.0  # one element differs: its columns must not be taken
    _compare(g, [gw], [{"x": changed, "w": wv, "gy": gyv}, {"x": xv, "w": wv, "gy": gyv}])


def test_the_columns_memo_answers_only_for_a_bytewise_equal_input():
    memo = lowerings_conv._Memo()
    x = np.arange(8, dtype="float32").reshape(2, 4)
    x[0, 0] = np.nan
    cols = memo.put("k", x, (3,), "float32")
    assert memo.get("k", x.copy()) is cols  # NaN equals itself bytewise
    y = x.copy()
    y[1, 3] = -y[1, 3]
    assert memo.get("k", y) is None and memo.get("other", x) is None
    for i in range(memo.LIMIT):
        memo.put(i, x, (3,), "float32")
    assert memo.get("k", x) is None and len(memo.entries) == memo.LIMIT  # the oldest went first


def test_the_columns_memo_keeps_to_its_byte_budget(monkeypatch):
    memo = lowerings_conv._Memo()
    monkeypatch.setattr(memo, "BUDGET", 1000)
    x = np.zeros(25, "float32")  # 100 bytes, and 100 of columns: 200 an entry
    for i in range(4):
        assert memo.put(i, x, (25,), "float32") is not None
    assert memo.put("big", x, (250,), "float32") is None  # 1100 bytes: not kept at all
    assert len(memo.entries) == 4
    memo.put("more", x, (150,), "float32")  # 700 bytes: the three oldest go (800 + 700 > 1000)
    assert list(memo.entries) == [3, "more"]
    assert sum(a.nbytes + b.nbytes for a, b in memo.entries.values()) <= 1000


def test_batches_split_over_threads_match_the_reference(monkeypatch):
    """GRAPHC_BLAS_THREADS=2 fixes the tuner's pick at 2: every conv and pool call splits its
    batch (3 images: parts of 1 and 2) over two threads (the size floor lowered to split them)."""
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "2")
    rng = np.random.default_rng(11)
    with gc.Graph("split") as g:
        x = g.input("x", ("batch", 2, 10, 10))
        w1 = g.input("w1", (4, 2, 3, 3))
        w2 = g.input("w2", (6, 4, 3, 3))
        h = gc.max_pool2d(gc.relu(gc.conv2d(x, w1)), 2)  # 8x8 -> 4x4
        h = gc.avg_pool2d(gc.conv2d(h, w2, padding=1), 2)
        c = gc.constant(rng.standard_normal((1, *h.shape[1:])).astype("float32"))
        gx, g1, g2 = gc.grad(gc.sum(h * c), [x, w1, w2])

    def arr(*shape):
        return rng.standard_normal(shape).astype("float32")

    feeds = [{"x": arr(b, 2, 10, 10), "w1": arr(4, 2, 3, 3), "w2": arr(6, 4, 3, 3)} for b in (3, 1, 3)]
    parts = []  # the thread count of each split call, when it was made
    split = lowerings_conv.batch_split
    monkeypatch.setattr(split, "MIN_PART_ELEMENTS", 1)  # these small batches split too
    real = split.over_batch
    monkeypatch.setattr(split, "over_batch", lambda n, e, *p: parts.append(split.threads(n, e)) or real(n, e, *p))
    from graphc.backends.numba import team

    before = team.STATS["tasks"]
    _compare(g, [h, gx, g1, g2], feeds)
    assert 2 in parts and 1 in parts  # batches of 3 split in two; the batch of 1 ran whole
    if team.team() is not None:  # the pooling kernels' parts (native code) ran on the native workers
        assert team.STATS["tasks"] > before
    split_values = gc.compile(g, "numba", outputs=[h, gx, g1, g2])(feeds[0])
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "1")
    whole_values = gc.compile(g, "numba", outputs=[h, gx, g1, g2])(feeds[0])
    for a, b in zip(split_values, whole_values):  # each image's arithmetic is the same either way
        np.testing.assert_array_equal(a, b)


def _grouped_conv_graph(rng):
    with gc.Graph("native-parts") as g:
        x = g.input("x", ("batch", 4, 9, 9))
        w1 = g.input("w1", (6, 2, 3, 3))  # two groups
        w2 = g.input("w2", (5, 6, 4, 4))  # 16 output pixels < 96 per column: the transposed layout
        h = gc.conv2d(gc.relu(gc.conv2d(x, w1, groups=2, padding=1)), w2, stride=2)
        c = gc.constant(rng.standard_normal((1, *h.shape[1:])).astype("float32"))
        grads = gc.grad(gc.sum(h * c), [x, w1, w2])
    return g, [h, *grads]


@pytest.mark.parametrize("native_gemms", [True, False])
def test_conv_parts_run_as_native_tasks_and_match_the_reference(monkeypatch, native_gemms):
    """Each split conv part is one native series (its columns, its gemms, its col2im) for the
    native workers; with gemms BLAS cannot take natively the parts run from Python threads.
    A new batch at every call, and the same array's contents changed in place, both give the
    reference's values (the gemms made once, the columns task again for a new batch)."""
    from graphc.backends.numba import accumulate, native

    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "2")
    split = lowerings_conv.batch_split
    monkeypatch.setattr(split, "MIN_PART_ELEMENTS", 1)
    if not native_gemms:
        monkeypatch.setattr(accumulate, "task", lambda *a, **k: None)
    kinds = []  # per split call: were all its parts native tasks?
    real = split.in_parallel
    monkeypatch.setattr(
        split, "in_parallel", lambda fns: kinds.append(all(isinstance(f, native.NativeTask) for f in fns)) or real(fns)
    )
    made = []
    real_gemms = lowerings_conv.gemms
    monkeypatch.setattr(lowerings_conv, "gemms", lambda products: made.append(1) or real_gemms(products))
    rng = np.random.default_rng(5)
    g, outs = _grouped_conv_graph(rng)

    def arr(*shape):
        return rng.standard_normal(shape).astype("float32")

    ws = {"w1": arr(6, 2, 3, 3), "w2": arr(5, 6, 4, 4)}
    ref, got = gc.compile(g, "reference", outputs=outs), gc.compile(g, "numba", outputs=outs)
    same = arr(4, 4, 9, 9)
    batches = [arr(4, 4, 9, 9) for _ in range(3)] + [same, same, None, arr(4, 4, 9, 9), arr(4, 4, 9, 9)]
    for i, x in enumerate(batches):
        if x is None:
            same *= -2.0  # the same array as the last call's, other contents
            x = same
        for o, r, v in zip(outs, ref({"x": x, **ws}), got({"x": x, **ws})):
            np.testing.assert_allclose(v, r, rtol=2e-4, atol=2e-5 * max(1.0, float(np.abs(r).max())), err_msg=str(o))
        if i == 2:
            made_by_then = len(made)
    assert kinds and all(kinds) == (native_gemms and chain_runs())
    if native_gemms and chain_runs():
        assert len(made) == made_by_then  # the gemms of later calls, new batches or not, were made before


def chain_runs() -> bool:
    from graphc.backends.numba import chain

    return chain._runner() is not None


def test_a_small_batch_is_not_split(monkeypatch):
    split = lowerings_conv.batch_split
    monkeypatch.setattr(split.blas, "large", 2)
    assert split.threads(64, 2 * split.MIN_PART_ELEMENTS) == 2
    assert split.threads(64, 2 * split.MIN_PART_ELEMENTS - 1) == 1  # each part would be under the floor
    assert split.threads(1, 10 * split.MIN_PART_ELEMENTS) == 1  # one image
    monkeypatch.setattr(split.blas, "large", 1)
    assert split.threads(64, 10 * split.MIN_PART_ELEMENTS) == 1  # the tuner chose one thread
