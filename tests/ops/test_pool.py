"""max_pool2d / avg_pool2d and their gradient ops: values vs loops, gradients vs differences, errors."""

import numpy as np
import pytest
from gradcheck import check_grad, check_second_order

import graphc as gc
from graphc.errors import AttributeValueError, DTypeError, ShapeError

rng = np.random.default_rng(0)


def distinct(shape, r=None):
    """Values with gaps >= 0.1 between any two, so finite differences never cross a max tie."""
    r = rng if r is None else r
    n = int(np.prod(shape))
    return (r.permutation(n) * 0.1 + r.uniform(0, 0.01, n) - n * 0.05).reshape(shape)


def naive_pool(x, k, s, p, mode, count_include_pad=True):
    n, c, h, w = x.shape
    ho, wo = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - p[0], j * s[1] - p[1]
            win = x[:, :, max(r0, 0) : r0 + k[0], max(c0, 0) : c0 + k[1]]
            if mode == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                y[:, :, i, j] = win.sum(axis=(2, 3)) / (k[0] * k[1] if count_include_pad else win[0, 0].size)
    return y


def naive_max_grad(x, g, k, s, p):
    """Each window's gradient goes to its first (row-major) maximum."""
    dx = np.zeros_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    best = None
                    for r in range(i * s[0] - p[0], i * s[0] - p[0] + k[0]):
                        for q in range(j * s[1] - p[1], j * s[1] - p[1] + k[1]):
                            if 0 <= r < x.shape[2] and 0 <= q < x.shape[3]:
                                if best is None or x[b, c, r, q] > x[b, c, best[0], best[1]]:
                                    best = (r, q)
                    dx[b, c, best[0], best[1]] += g[b, c, i, j]
    return dx


# (x shape, kernel, stride, padding)
CASES = {
    "2x2": ((2, 3, 6, 6), 2, None, 0),
    "odd_uncovered": ((2, 2, 7, 5), 2, None, 0),
    "overlap": ((2, 2, 6, 7), 3, 1, 0),
    "overlap_pad": ((2, 3, 5, 5), 3, 2, 1),
    "rect": ((1, 2, 7, 6), (3, 2), (2, 1), (1, 1)),
    "pad_w_only": ((2, 1, 5, 6), (2, 4), 2, (0, 2)),
}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["max", "avg", "avg_nopad"])
def test_pool_values_match_loops(case, mode):
    xs, k, s, p = CASES[case]
    x = rng.standard_normal(xs)
    kw = {"count_include_pad": False} if mode == "avg_nopad" else {}
    with gc.Graph() as g:
        xn = g.input("x", xs, "float64")
        y = (gc.max_pool2d if mode == "max" else gc.avg_pool2d)(xn, k, s, p, **kw)
    k2, s2, p2 = _pair(k), _pair(k if s is None else s), _pair(p)
    want = naive_pool(x, k2, s2, p2, mode[:3], mode != "avg_nopad")
    assert y.shape == want.shape
    np.testing.assert_allclose(gc.run(g, {"x": x}, outputs=y), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_max_pool_grad_routes_to_first_max(case):
    xs, k, s, p = CASES[case]
    x = np.round(rng.standard_normal(xs))  # many ties
    with gc.Graph() as g:
        xn = g.input("x", xs, "float64")
        y = gc.max_pool2d(xn, k, s, p)
        gy = g.input("gy", y.shape, "float64")
        dx = gc.max_pool2d_grad(xn, gy, k, s, p)
    gys = rng.standard_normal(y.shape)
    k2, s2, p2 = _pair(k), _pair(k if s is None else s), _pair(p)
    np.testing.assert_allclose(gc.run(g, {"x": x, "gy": gys}, outputs=dx), naive_max_grad(x, gys, k2, s2, p2))


@pytest.mark.parametrize("case", CASES)
def test_pool_gradients(case):
    xs, k, s, p = CASES[case]
    arrays = {"x": distinct(xs)}
    check_grad(lambda x: gc.max_pool2d(x, k, s, p), arrays)
    check_grad(lambda x: gc.avg_pool2d(x, k, s, p), arrays)
    check_grad(lambda x: gc.avg_pool2d(x, k, s, p, count_include_pad=False), arrays)


@pytest.mark.parametrize("case", ["overlap_pad", "rect", "odd_uncovered"])
def test_pool_grad_ops_gradients(case):
    """The backward ops differentiate correctly too (x gets zero through the max selections)."""
    xs, k, s, p = CASES[case]
    with gc.Graph():
        ys = gc.max_pool2d(gc.Graph().input("x", xs, "float64"), k, s, p).shape
    x, g, h = distinct(xs), rng.standard_normal(ys), rng.standard_normal(xs)
    gx = check_grad(lambda x, g: gc.max_pool2d_grad(x, g, k, s, p), {"x": x, "g": g})[0]
    np.testing.assert_array_equal(gx, 0.0)
    check_grad(lambda x, h: gc.max_pool2d_gather(x, h, k, s, p), {"x": x, "h": h})
    for cip in (True, False):
        check_grad(lambda g, cip=cip: gc.avg_pool2d_grad(g, xs[2:], k, s, p, count_include_pad=cip), {"g": g})


def test_gather_reads_the_first_max():
    x = np.array([[[[1.0, 3.0, 3.0], [0.0, 3.0, 2.0], [5.0, 5.0, 5.0]]]])  # ties in every window
    h = np.arange(9.0).reshape(1, 1, 3, 3)
    with gc.Graph() as g:
        xn, hn = g.input("x", (1, 1, 3, 3), "float64"), g.input("h", (1, 1, 3, 3), "float64")
        out = gc.max_pool2d_gather(xn, hn, 2, 1)
    np.testing.assert_array_equal(gc.run(g, {"x": x, "h": h}, outputs=out)[0, 0], [[1.0, 1.0], [6.0, 7.0]])


@pytest.mark.parametrize("case", ["overlap_pad", "rect"])
def test_pool_second_order(case):
    xs, k, s, p = CASES[case]
    arrays = {"x": distinct(xs) * 0.1}
    check_second_order(lambda x: gc.tanh(gc.max_pool2d(x, k, s, p)), arrays, "x")
    check_second_order(lambda x: gc.tanh(gc.avg_pool2d(x, k, s, p)), arrays, "x")
    check_second_order(lambda x: gc.avg_pool2d(x * x * x, k, s, p, count_include_pad=False), arrays, "x")


def test_small_cnn_second_order():
    """conv -> relu-free tanh -> max pool -> avg pool: a Hessian-vector product through all ops.

    Its own generator: drawn from the module's, the values depended on which tests ran before it
    in the same worker, and some draws put two of the conv's outputs in one pooling window within
    the difference step (a max tie: the finite difference is then meaningless)."""
    r = np.random.default_rng(12)
    w = r.standard_normal((2, 1, 2, 2)) * 0.5
    f = lambda x, w: gc.avg_pool2d(gc.tanh(gc.max_pool2d(gc.conv2d(x, w, padding=1), 2, 1)), 2)
    arrays = {"x": distinct((2, 1, 4, 4), r) * 0.1, "w": w}
    check_second_order(f, arrays, "w")
    check_second_order(f, arrays, "x")


def test_symbolic_batch():
    x = rng.standard_normal((3, 2, 6, 6)).astype("float32")
    with gc.Graph() as g:
        xn = g.input("x", ("batch", 2, 6, 6))
        y = gc.max_pool2d(xn, 2) + gc.avg_pool2d(xn, 3, 2, 1)[:, :, :3, :3]
        gx = gc.grad(gc.sum(y * y), xn)
    assert y.shape == ("batch", 2, 3, 3) and gx.shape == ("batch", 2, 6, 6)
    yv, gxv = gc.run(g, {"x": x}, outputs=[y, gx])
    want = naive_pool(x, (2, 2), (2, 2), (0, 0), "max") + naive_pool(x, (3, 3), (2, 2), (1, 1), "avg")[:, :, :3, :3]
    assert yv.dtype == np.float32 and gxv.dtype == np.float32
    np.testing.assert_allclose(yv, want, rtol=1e-5, atol=1e-6)


LOC = r"test_pool\.py:\d+"


def _x(shape=(1, 2, 4, 4), dtype="float32"):
    return gc.Graph().input("x", shape, dtype)


def test_errors():
    with pytest.raises(ShapeError, match=r"max_pool2d\(f32\[1,2,4,4\]\): kernel 5x5 is larger than the padded.*" + LOC):
        gc.max_pool2d(_x(), 5)
    with pytest.raises(
        AttributeValueError, match=r"avg_pool2d: padding \(2, 2\) must be at most half the kernel.*" + LOC
    ):
        gc.avg_pool2d(_x(), 3, padding=2)
    with pytest.raises(AttributeValueError, match=r"max_pool2d: stride must be an int >= 1.*got \(0, 1\).*" + LOC):
        gc.max_pool2d(_x(), 2, (0, 1))
    with pytest.raises(AttributeValueError, match=r"max_pool2d: kernel must be .*got 'big'.*" + LOC):
        gc.max_pool2d(_x(), "big")
    with pytest.raises(ShapeError, match=r"avg_pool2d\(f32\[2,4,4\]\): input must be 4-D.*" + LOC):
        gc.avg_pool2d(_x((2, 4, 4)), 2)
    with pytest.raises(DTypeError, match=r"max_pool2d\(i64\[1,2,4,4\]\): needs a float input, got int64.*" + LOC):
        gc.max_pool2d(_x(dtype="int64"), 2)
    with pytest.raises(DTypeError, match=r"max_pool2d: needs a graph node, got ndarray.*" + LOC):
        gc.max_pool2d(np.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(ShapeError, match=r"avg_pool2d_grad.*should be 2x2 for input size \(5, 5\).*" + LOC):
        gc.avg_pool2d_grad(_x((1, 2, 3, 3)), (5, 5), 2)
