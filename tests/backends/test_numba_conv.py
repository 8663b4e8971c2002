"""Numba lowerings of conv2d (+ gradients), pooling (+ gradients) and label cross-entropy match the
reference interpreter: forward and backward, stride/padding/dilation/groups, odd sizes,
symbolic batch; conv+bias+relu stays one kernel; no intermediate is allocated per call."""

import numpy as np
import pytest

import graphc as gc
from graphc.errors import IndexRangeError

pytest.importorskip("numba")

RTOL, ATOL = 2e-4, 2e-5
rng = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def _fresh_rng():
    """Each test draws the same numbers whichever tests ran before it (xdist reorders them)."""
    global rng
    rng = np.random.default_rng(7)


def _arr(shape):
    return rng.standard_normal(shape).astype("float32")


def _compare(g, outs, feeds, batches=None):
    ref = gc.compile(g, "reference", outputs=outs)
    got = gc.compile(g, "numba", outputs=outs)
    for f in [feeds, *(batches or [])]:
        for o, r, v in zip(outs, ref(f), got(f)):
            assert v.shape == r.shape and v.dtype == r.dtype, o
            # float32 sums of large terms that cancel: the absolute error scales with the terms
            atol = ATOL * max(1.0, float(np.abs(r).max(initial=0.0)))
            np.testing.assert_allclose(v, r, rtol=RTOL, atol=atol, err_msg=str(o))
    return got


CONV_CASES = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=((1, 0), (2, 1))),
    dict(dilation=2, padding="same"),
    dict(dilation=(1, 2), stride=(1, 3)),
    dict(groups=2, stride=2),
    dict(groups=4, padding=1),  # depthwise-like
]


@pytest.mark.parametrize("kw", CONV_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "plain")
def test_conv_forward_and_gradients(kw):
    groups = kw.get("groups", 1)
    with gc.Graph("conv") as g:
        x = g.input("x", ("batch", 4, 9, 7))  # odd spatial sizes
        w = g.input("w", (6 if groups != 4 else 8, 4 // groups, 3, 3))
        y = gc.conv2d(x, w, **kw)
        c = gc.constant(_arr((1, *y.shape[1:])))
        gx, gw = gc.grad(gc.sum(y * c), [x, w])
        # second order: the gradient ops' own VJPs (conv2d and the other gradient op)
        hx, hw = gc.grad(gc.sum(gx * gx) + gc.sum(gw * gw), [x, w])
    feeds = {"x": _arr((3, 4, 9, 7)), "w": _arr(w.shape)}
    other = {"x": _arr((5, 4, 9, 7)), "w": feeds["w"]}
    _compare(g, [y, gx, gw, hx, hw], feeds, [other])


def test_conv_1x1_and_batch_of_one():
    with gc.Graph("c1") as g:
        x = g.input("x", ("batch", 6, 5, 3))
        w = g.input("w", (4, 3, 1, 1))
        y = gc.conv2d(x, w, groups=2)
        gx, gw = gc.grad(gc.sum(y * y), [x, w])
    _compare(g, [y, gx, gw], {"x": _arr((1, 6, 5, 3)), "w": _arr((4, 3, 1, 1))})


def test_conv_bias_relu_is_one_kernel_and_matches():
    with gc.Graph("cbr") as g:
        x = g.input("x", ("batch", 3, 10, 10))
        w = g.param("w", (5, 3, 3, 3), init=_arr((5, 3, 3, 3)))
        b = g.param("b", (5, 1, 1), init=_arr((5, 1, 1)))
        y = gc.relu(gc.conv2d(x, w, padding=1) + b)
    exe = _compare(g, [y], {"x": _arr((2, 3, 10, 10))})
    conv = [k for k in exe.kernels if k.anchor is not None and exe.graph.nodes[k.anchor].op == "conv2d"]
    assert len(conv) == 1 and len(exe.kernels) == 1
    assert {exe.graph.nodes[i].op for i in conv[0].node_ids} >= {"conv2d", "add", "relu"}


@pytest.mark.parametrize(
    "pool,kw",
    [
        (gc.max_pool2d, dict(kernel=2)),
        (gc.max_pool2d, dict(kernel=3, stride=2, padding=1)),
        (gc.max_pool2d, dict(kernel=(3, 2), stride=1, padding=(1, 1))),
        (gc.avg_pool2d, dict(kernel=2)),
        (gc.avg_pool2d, dict(kernel=3, stride=2, padding=1)),
        (gc.avg_pool2d, dict(kernel=3, stride=2, padding=1, count_include_pad=False)),
    ],
)
def test_pool_forward_and_gradients(pool, kw):
    with gc.Graph("pool") as g:
        x = g.input("x", ("batch", 3, 9, 8))
        y = pool(x, **kw)
        c = gc.constant(_arr((1, *y.shape[1:])))
        (gx,) = gc.grad(gc.sum(y * y * c), [x])
        (hx,) = gc.grad(gc.sum(gx * gx), [x])  # max: max_pool2d_gather; avg: avg_pool2d again
    xv = _arr((3, 3, 9, 8))
    _compare(g, [y, gx, hx], {"x": xv}, [{"x": _arr((2, 3, 9, 8))}])


@pytest.mark.parametrize("padding,hw", [(1, (4, 5)), (0, (5, 7))], ids=["padded", "2x2-fast-path-odd-size"])
def test_max_pool_ties_nan_and_infinities_route_like_the_reference(padding, hw):
    with gc.Graph("ties") as g:
        x = g.input("x", (1, 2, *hw))
        y = gc.max_pool2d(x, 2, padding=padding)
        (gx,) = gc.grad(gc.sum(y * gc.constant(_arr((1, *y.shape[1:])))), [x])
    xv = np.zeros((1, 2, *hw), "float32")  # ties everywhere: the first maximum wins
    xv[0, 1, :2, :2] = -np.inf
    xv[0, 1, 3, 3] = np.nan
    xv[0, 0, 2, 1] = xv[0, 0, 3, 0] = 1.0  # a tie between two non-first positions of a window
    ref = gc.compile(g, "reference", outputs=[y, gx])({"x": xv})
    got = gc.compile(g, "numba", outputs=[y, gx])({"x": xv})
    for r, v in zip(ref, got):
        np.testing.assert_array_equal(v, r)


def test_lenet_like_training_step_matches_reference():
    def build():
        r = np.random.default_rng(1)
        with gc.Graph("lenet") as g:
            h = g.input("x", ("batch", 1, 12, 12))
            y = g.input("y", ("batch",), "int64")
            for i, (cin, cout) in enumerate([(1, 4), (4, 6)]):
                w = g.param(f"w{i}", (cout, cin, 3, 3), init=r.standard_normal((cout, cin, 3, 3)).astype("f4") * 0.3)
                b = g.param(f"b{i}", (cout, 1, 1), init=r.standard_normal((cout, 1, 1)).astype("f4") * 0.1)
                h = gc.max_pool2d(gc.relu(gc.conv2d(h, w) + b), 2)
            h = gc.flatten(h)
            wd = g.param("wd", (h.shape[1], 5), init=r.standard_normal((h.shape[1], 5)).astype("f4") * 0.2)
            loss = g.output("loss", gc.cross_entropy(h @ wd, y))
            for name, grad in gc.gradients(loss).items():
                g.update(name, g.params[name] - 0.1 * grad)
        return g, loss

    feeds = {"x": _arr((8, 1, 12, 12)), "y": rng.integers(0, 5, 8)}
    (g1, l1), (g2, l2) = build(), build()
    ref, got = gc.compile(g1, "reference", outputs=[l1]), gc.compile(g2, "numba", outputs=[l2])
    for _ in range(3):  # parameters are updated in place: the steps must keep agreeing
        np.testing.assert_allclose(got(feeds)[0], ref(feeds)[0], rtol=1e-4, atol=1e-6)
    for name in g1.params:
        np.testing.assert_allclose(g2.values[name], g1.values[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_cross_entropy_labels_forward_backward_axis_and_errors():
    with gc.Graph("ce") as g:
        x = g.input("x", (3, 5, "batch"))
        lab = g.input("lab", (3, "batch"), "int32")
        per = gc.cross_entropy(x, lab, axis=1, reduction="none")
        (gx,) = gc.grad(gc.sum(per * gc.constant(_arr((3, 1)))), [x])
    xv = _arr((3, 5, 4)) * 30  # large logits: log-sum-exp must stay finite
    feeds = {"x": xv, "lab": rng.integers(0, 5, (3, 4)).astype("int32")}
    exe = _compare(g, [per, gx], feeds)
    bad = {**feeds, "lab": feeds["lab"].copy()}
    bad["lab"][2, 1] = 5
    with pytest.raises(IndexRangeError, match=r"label 5 at position \(2, 1\)"):
        exe(bad)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_one_hot_matches_the_reference_and_names_a_bad_label(axis):
    with gc.Graph("oh") as g:
        lab = g.input("lab", ("batch", 3), "int64")
        y = gc.one_hot(lab, 4, axis=axis) * 2.0
    feeds = {"lab": rng.integers(0, 4, (5, 3))}
    exe = _compare(g, [y], feeds, [{"lab": rng.integers(0, 4, (2, 3))}])
    feeds["lab"][3, 2] = -1
    with pytest.raises(IndexRangeError, match=r"one_hot: label -1 at position \(3, 2\)"):
        exe(feeds)


def test_no_intermediate_allocated_per_call():
    import tracemalloc

    with gc.Graph("alloc") as g:
        x = g.input("x", (8, 2, 32, 32))
        w = g.param("w", (3, 2, 3, 3), init=_arr((3, 2, 3, 3)))
        y = gc.avg_pool2d(gc.max_pool2d(gc.relu(gc.conv2d(x, w, padding=1)), 2), 2)
        loss = g.output("loss", gc.sum(y * y))
        g.update("w", w - 0.01 * gc.gradients(loss)["w"])
    exe = gc.compile(g, "numba", outputs=[loss])
    xv = _arr((8, 2, 32, 32))
    for _ in range(3):
        exe(x=xv)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(5):
        exe(x=xv)
    grown = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    # the smallest intermediate (the pooled 8x3x8x8 map) is 6 kB, the conv output 98 kB; Python's
    # own small objects for a call stay well under that
    assert grown < 6000 * 2, grown
