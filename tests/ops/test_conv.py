"""conv2d and its gradient ops: values vs a direct loop, gradients vs finite differences, errors."""

import numpy as np
import pytest
from gradcheck import check_grad, check_second_order

import graphc as gc
from graphc.errors import AttributeValueError, DTypeError, ShapeError
from graphc.ops import registry
from graphc.ops.registry import Kind

rng = np.random.default_rng(0)


def naive_conv(x, w, stride=(1, 1), pad=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Direct-loop cross-correlation: the independent oracle for the im2col reference."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + pad[0] + pad[1], wd + pad[2] + pad[3]))
    xp[:, :, pad[0] : pad[0] + h, pad[2] : pad[2] + wd] = x
    ho = (xp.shape[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (xp.shape[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    og = o // groups
    y = np.zeros((n, o, ho, wo))
    for b in range(n):
        for f in range(o):
            grp = f // og
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                r, s = i * stride[0] + p * dilation[0], j * stride[1] + q * dilation[1]
                                acc += xp[b, grp * cg + ci, r, s] * w[f, ci, p, q]
                    y[b, f, i, j] = acc
    return y


# (x shape, w shape, stride, padding, dilation, groups, padding as 4-tuple for the naive loop)
CASES = {
    "plain": ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 1, (0, 0, 0, 0)),
    "stride2_pad1": ((2, 2, 7, 6), (3, 2, 3, 3), 2, 1, 1, 1, (1, 1, 1, 1)),
    "stride_uncovered": ((2, 2, 6, 7), (2, 2, 2, 3), (3, 2), 0, 1, 1, (0, 0, 0, 0)),
    "dilation": ((2, 2, 7, 7), (3, 2, 3, 2), 1, (1, 2), (2, 3), 1, (1, 1, 2, 2)),
    "groups": ((2, 4, 5, 6), (6, 2, 3, 3), 1, 1, 1, 2, (1, 1, 1, 1)),
    "depthwise": ((2, 3, 5, 5), (3, 1, 2, 2), 2, 1, 1, 3, (1, 1, 1, 1)),
    "asym_pad": ((1, 2, 5, 4), (2, 2, 2, 3), 1, ((0, 1), (2, 0)), 1, 1, (0, 1, 2, 0)),
    "same_even": ((2, 2, 5, 6), (2, 2, 2, 4), 1, "same", 1, 1, (0, 1, 1, 2)),
    "same_dilated": ((1, 2, 6, 5), (3, 2, 3, 3), 1, "same", 2, 1, (2, 2, 2, 2)),
    "valid_1x1": ((2, 3, 4, 5), (2, 3, 1, 1), 1, "valid", 1, 1, (0, 0, 0, 0)),
}


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("case", CASES)
def test_conv2d_matches_direct_loop(case):
    xs, ws, stride, padding, dilation, groups, pad4 = CASES[case]
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    with gc.Graph() as g:
        xn, wn = g.input("x", xs, "float64"), g.input("w", ws, "float64")
        y = gc.conv2d(xn, wn, stride, padding, dilation, groups)
    want = naive_conv(x, w, _pair(stride), pad4, _pair(dilation), groups)
    assert y.shape == want.shape
    np.testing.assert_allclose(gc.run(g, {"x": x, "w": w}, outputs=y), want, rtol=1e-12, atol=1e-12)
    if padding == "same":
        assert y.shape[2:] == xs[2:]


@pytest.mark.parametrize("case", CASES)
def test_conv2d_gradients(case):
    xs, ws, stride, padding, dilation, groups, _ = CASES[case]
    check_grad(
        lambda x, w: gc.conv2d(x, w, stride, padding, dilation, groups),
        {"x": rng.standard_normal(xs), "w": rng.standard_normal(ws)},
    )


@pytest.mark.parametrize("case", ["stride2_pad1", "stride_uncovered", "dilation", "groups", "asym_pad"])
def test_grad_ops_gradients(case):
    """conv2d_grad_input and conv2d_grad_weight differentiate correctly in both inputs."""
    xs, ws, stride, padding, dilation, groups, _ = CASES[case]
    geo = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    ys = naive_conv(np.zeros(xs), np.zeros(ws), _pair(stride), CASES[case][6], _pair(dilation), groups).shape
    x, w, gy = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ys)
    check_grad(lambda g, w: gc.conv2d_grad_input(g, w, xs[2:], **geo), {"g": gy, "w": w})
    check_grad(lambda x, g: gc.conv2d_grad_weight(x, g, ws, **geo), {"x": x, "g": gy})


def test_grad_ops_are_adjoints():
    """<conv(x, w), gy> = <x, grad_input(gy, w)> = <w, grad_weight(x, gy)>."""
    xs, ws, stride, padding, dilation, groups, _ = CASES["groups"]
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    with gc.Graph() as g:
        xn, wn = g.input("x", xs, "float64"), g.input("w", ws, "float64")
        y = gc.conv2d(xn, wn, stride, padding, dilation, groups)
        gy = g.input("gy", y.shape, "float64")
        gi = gc.conv2d_grad_input(gy, wn, xs[2:], stride, padding, dilation, groups)
        gw = gc.conv2d_grad_weight(xn, gy, ws, stride, padding, dilation, groups)
    gys = rng.standard_normal(y.shape)
    yv, giv, gwv = gc.run(g, {"x": x, "w": w, "gy": gys}, outputs=[y, gi, gw])
    b = np.sum(yv * gys)
    np.testing.assert_allclose([np.sum(x * giv), np.sum(w * gwv)], [b, b], rtol=1e-12)


@pytest.mark.parametrize("case", ["stride2_pad1", "groups", "dilation"])
def test_conv2d_second_order(case):
    xs, ws, stride, padding, dilation, groups, _ = CASES[case]
    arrays = {"x": rng.standard_normal(xs), "w": rng.standard_normal(ws) * 0.5}
    f = lambda x, w: gc.tanh(gc.conv2d(x, w, stride, padding, dilation, groups))
    check_second_order(f, arrays, "x")
    check_second_order(f, arrays, "w")
    # mixed partials: d/dw of (d/dx of f) and d/dx of (d/dw of f)
    check_grad(lambda x, w: gc.grad(gc.sum(f(x, w)), x), arrays)
    check_grad(lambda x, w: gc.grad(gc.sum(f(x, w) * f(x, w)), w), arrays)


def test_symbolic_batch_and_float32():
    x = rng.standard_normal((3, 2, 6, 6)).astype("float32")
    w = rng.standard_normal((4, 2, 3, 3)).astype("float32")
    with gc.Graph() as g:
        xn = g.input("x", ("batch", 2, 6, 6))
        wn = g.param("w", (4, 2, 3, 3))
        y = gc.conv2d(xn, wn, stride=2, padding=1)
        gx, gw = gc.grad(gc.sum(y * y), [xn, wn])
    assert y.shape == ("batch", 4, 3, 3) and y.dtype == "float32"
    assert gx.shape == ("batch", 2, 6, 6) and gw.shape == (4, 2, 3, 3)
    g.values["w"] = w
    yv, gxv, gwv = gc.run(g, {"x": x}, outputs=[y, gx, gw])
    want = naive_conv(x.astype(float), w.astype(float), (2, 2), (1, 1, 1, 1))
    assert yv.dtype == np.float32 and gxv.dtype == np.float32
    np.testing.assert_allclose(yv, want, rtol=1e-5, atol=1e-5)
    yv5 = gc.run(g, {"x": np.concatenate([x, x[:2]])}, outputs=y)
    assert yv5.shape == (5, 4, 3, 3)
    np.testing.assert_allclose(yv5[3:], want[:2], rtol=1e-5, atol=1e-5)


def test_conv_bias_relu_chain_is_plain_ops():
    """Bias is a broadcast add after the conv (so fusion can merge conv+bias+relu)."""
    with gc.Graph() as g:
        x = g.input("x", ("batch", 1, 8, 8))
        w = g.param("w", (3, 1, 3, 3))
        b = g.param("b", (3,), init="zeros")
        y = gc.relu(gc.conv2d(x, w) + gc.reshape(b, (1, 3, 1, 1)))
    assert [n.op for n in g.live_nodes([y]) if n.opdef.kind is not Kind.SOURCE][0] == "conv2d"
    assert {registry.get(op).kind for op in ("conv2d", "conv2d_grad_input", "conv2d_grad_weight")} == {Kind.OUT_FUSABLE}
    assert y.shape == ("batch", 3, 6, 6)


def _declare(xs, ws, xdt="float32", wdt="float32", **kw):
    with gc.Graph() as g:
        x = g.input("x", xs, xdt)
        w = g.input("w", ws, wdt)
        return gc.conv2d(x, w, **kw)


LOC = r"test_conv\.py:\d+"


def test_error_channel_mismatch():
    with pytest.raises(ShapeError, match=r"conv2d\(f32\[batch,3,8,8\], f32\[4,2,3,3\]\): channel mismatch.*" + LOC):
        _declare(("batch", 3, 8, 8), (4, 2, 3, 3))


def test_error_groups_do_not_divide():
    with pytest.raises(ShapeError, match=r"conv2d.*groups=2 must divide input channels 3.*" + LOC):
        _declare((1, 3, 8, 8), (4, 1, 3, 3), groups=2)
    with pytest.raises(ShapeError, match=r"groups=2 must divide .* output channels 3.*" + LOC):
        _declare((1, 4, 8, 8), (3, 2, 3, 3), groups=2)
    with pytest.raises(AttributeValueError, match=r"conv2d: groups must be a positive int, got 0.*" + LOC):
        _declare((1, 4, 8, 8), (3, 2, 3, 3), groups=0)


def test_error_kernel_larger_than_padded_input():
    with pytest.raises(
        ShapeError, match=r"conv2d\(.*f32\[2,1,7,7\]\): kernel 7x7 .* larger than the padded input 6x6.*" + LOC
    ):
        _declare((1, 1, 4, 4), (2, 1, 7, 7), padding=1)
    with pytest.raises(ShapeError, match=r"dilation 2x2: spans 5x5\) is larger than the padded input 4x4.*" + LOC):
        _declare((1, 1, 4, 4), (2, 1, 3, 3), dilation=2)


def test_error_attributes():
    with pytest.raises(
        AttributeValueError, match=r"conv2d: padding='same' needs stride 1, got stride=\(2, 2\).*" + LOC
    ):
        _declare((1, 1, 8, 8), (2, 1, 3, 3), stride=2, padding="same")
    with pytest.raises(AttributeValueError, match=r"conv2d: stride must be an int >= 1.*got 0.*" + LOC):
        _declare((1, 1, 8, 8), (2, 1, 3, 3), stride=0)
    with pytest.raises(AttributeValueError, match=r"conv2d: padding must be an int, a pair, 'valid' or 'same'.*" + LOC):
        _declare((1, 1, 8, 8), (2, 1, 3, 3), padding="full")
    with pytest.raises(AttributeValueError, match=r"conv2d: dilation must be .*got \(1, 2, 3\).*" + LOC):
        _declare((1, 1, 8, 8), (2, 1, 3, 3), dilation=(1, 2, 3))


def test_error_ranks_and_dtypes():
    with pytest.raises(ShapeError, match=r"conv2d\(f32\[3,8,8\], .*input must be 4-D \(N, C, H, W\).*" + LOC):
        _declare((3, 8, 8), (2, 3, 3, 3))
    with pytest.raises(
        ShapeError, match=r"conv2d\(.*\): input needs concrete spatial dims, got f32\[1,1,h,8\].*" + LOC
    ):
        _declare((1, 1, "h", 8), (2, 1, 3, 3))
    with pytest.raises(DTypeError, match=r"conv2d\(i32.*needs float inputs, got int32.*" + LOC):
        _declare((1, 1, 8, 8), (2, 1, 3, 3), xdt="int32", wdt="int32")


def test_error_grad_op_shapes():
    with gc.Graph() as g:
        gy = g.input("g", (1, 2, 5, 5))
        w = g.input("w", (2, 1, 3, 3))
        with pytest.raises(ShapeError, match=r"conv2d_grad_input.*output gradient should be \[N,2,6,6\].*" + LOC):
            gc.conv2d_grad_input(gy, w, (8, 8))
        x = g.input("x", (1, 1, 8, 8))
        with pytest.raises(ShapeError, match=r"conv2d_grad_weight.*should be \[1,2,6,6\], got f32\[1,2,5,5\].*" + LOC):
            gc.conv2d_grad_weight(x, gy, (2, 1, 3, 3))
