"""2-D convolution in NCHW, and the two ops its gradient is written in.

conv2d(x, w) is output-fusable: a layer adds its bias by broadcasting afterwards, so fusion
can merge conv + bias + activation. Its VJP uses conv2d_grad_input and conv2d_grad_weight;
the three ops are the partial derivatives of one bilinear form B(x, w, gy) = <conv2d(x, w), gy>,
so each one's VJP is written in the other two and any order of derivative works.

References use im2col (a strided window view of the padded input) and batched matmul, with
loops only over kernel positions, never over pixels.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphc.errors import AttributeValueError, DTypeError, ShapeError
from graphc.ir import dtypes, shapes
from graphc.ops.registry import Kind, OpDef, apply, error, register

__all__ = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight"]


# -- attribute normalisation (shared with pool.py) ------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def pair(op: str, name: str, v, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= minimum, as a pair."""
    vals = (v, v) if _is_int(v) else tuple(v) if isinstance(v, tuple | list) else None
    if vals is None or len(vals) != 2 or not all(_is_int(a) and a >= minimum for a in vals):
        error(AttributeValueError, op, f"{name} must be an int >= {minimum} or a pair of them, got {v!r}")
    return int(vals[0]), int(vals[1])


def spatial(x, what: str) -> tuple[int, int]:
    """(H, W) of an NCHW node, which must be concrete."""
    if x.ndim != 4:
        raise ShapeError(f"{what} must be 4-D (N, C, H, W), got {x.type_str}")
    h, w = x.shape[2:]
    if not (isinstance(h, int) and isinstance(w, int)):
        raise ShapeError(f"{what} needs concrete spatial dims, got {x.type_str}")
    return h, w


def out_size(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    return (size + pad - dilation * (k - 1) - 1) // stride + 1


def windows(xp: np.ndarray, k, stride, dilation=(1, 1)) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) read-only view of the windows of a padded NCHW array."""
    eff = [d * (kk - 1) + 1 for kk, d in zip(k, dilation)]
    v = sliding_window_view(xp, eff, axis=(2, 3))
    return v[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]


def scatter_windows(out: np.ndarray, cols, k, stride, dilation=(1, 1)) -> np.ndarray:
    """The adjoint of windows(): add cols(p, q) -> (N, C, Ho, Wo) into each window position of out."""
    for p in range(k[0]):
        for q in range(k[1]):
            c = cols(p, q)
            r0, c0 = p * dilation[0], q * dilation[1]
            out[
                :,
                :,
                r0 : r0 + stride[0] * (c.shape[2] - 1) + 1 : stride[0],
                c0 : c0 + stride[1] * (c.shape[3] - 1) + 1 : stride[1],
            ] += c
    return out


def pad_nchw(x: np.ndarray, pad, value=0.0) -> np.ndarray:
    """Pad H by (pad[0], pad[1]) and W by (pad[2], pad[3])."""
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[1]), (pad[2], pad[3])), constant_values=value)


def crop_nchw(xp: np.ndarray, pad, hw) -> np.ndarray:
    return xp[:, :, pad[0] : pad[0] + hw[0], pad[2] : pad[2] + hw[1]]


# -- shape rules ----------------------------------------------------------------------------
def _check_floats(*xs):
    if xs[0].dtype != xs[1].dtype:
        raise DTypeError(f"dtypes differ: {xs[0].dtype} and {xs[1].dtype}")
    if not dtypes.is_float(xs[0].dtype):
        raise DTypeError(f"needs float inputs, got {xs[0].dtype}")


def _conv_geometry(x_chw, w_shape, a):
    """Check an input (C, H, W) against a weight shape under attrs a; return (Ho, Wo)."""
    c, h, wd = x_chw
    o, cg, kh, kw = w_shape
    groups, (sh, sw), (dh, dw), pad = a["groups"], a["stride"], a["dilation"], a["padding"]
    if not isinstance(c, int):
        raise ShapeError(f"needs a concrete channel count, got {c!r}")
    if c % groups or o % groups:
        raise ShapeError(f"groups={groups} must divide input channels {c} and output channels {o}")
    if cg * groups != c:
        raise ShapeError(
            f"channel mismatch: input has {c} channels but weight {shapes.fmt(w_shape)} expects "
            f"{cg * groups} (= {cg} per group x groups={groups})"
        )
    hp, wp = h + pad[0] + pad[1], wd + pad[2] + pad[3]
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if ekh > hp or ekw > wp:
        raise ShapeError(
            f"kernel {kh}x{kw} (dilation {dh}x{dw}: spans {ekh}x{ekw}) is larger than the padded input {hp}x{wp}"
        )
    # a kernel that fits the padded input always gives an output size >= 1
    return out_size(h, kh, sh, pad[0] + pad[1], dh), out_size(wd, kw, sw, pad[2] + pad[3], dw)


def _infer_conv(inputs, a):
    x, w = inputs
    _check_floats(x, w)
    h, wd = spatial(x, "input")
    if w.ndim != 4 or not shapes.is_concrete(w.shape):
        raise ShapeError(f"weight must be concrete 4-D (O, C/groups, kh, kw), got {w.type_str}")
    ho, wo = _conv_geometry((x.shape[1], h, wd), w.shape, a)
    return (x.shape[0], w.shape[0], ho, wo), x.dtype


def _infer_grad_input(inputs, a):
    g, w = inputs
    _check_floats(g, w)
    spatial(g, "output gradient")
    if w.ndim != 4 or not shapes.is_concrete(w.shape):
        raise ShapeError(f"weight must be concrete 4-D (O, C/groups, kh, kw), got {w.type_str}")
    c = w.shape[1] * a["groups"]
    h, wd = a["input_hw"]
    expect = _conv_geometry((c, h, wd), w.shape, a)
    if g.shape[1] != w.shape[0] or tuple(g.shape[2:]) != expect:
        raise ShapeError(f"output gradient should be [N,{w.shape[0]},{expect[0]},{expect[1]}], got {g.type_str}")
    return (g.shape[0], c, h, wd), g.dtype


def _infer_grad_weight(inputs, a):
    x, g = inputs
    _check_floats(x, g)
    h, wd = spatial(x, "input")
    spatial(g, "output gradient")
    ws = a["weight_shape"]
    expect = _conv_geometry((x.shape[1], h, wd), ws, a)
    if g.shape[0] != x.shape[0] or g.shape[1] != ws[0] or tuple(g.shape[2:]) != expect:
        raise ShapeError(f"output gradient should be [{x.shape[0]},{ws[0]},{expect[0]},{expect[1]}], got {g.type_str}")
    return ws, x.dtype


# -- NumPy references -----------------------------------------------------------------------
def _cols(x: np.ndarray, a, k) -> np.ndarray:
    """im2col: (G, N*Ho*Wo, Cg*kh*kw) patches of the padded input (one copy), and (N, Ho, Wo)."""
    g = a["groups"]
    v = windows(pad_nchw(x, a["padding"]), k, a["stride"], a["dilation"])
    n, c, ho, wo = v.shape[:4]
    v = v.reshape(n, g, c // g, ho, wo, k[0], k[1]).transpose(1, 0, 3, 4, 2, 5, 6)
    return v.reshape(g, n * ho * wo, c // g * k[0] * k[1]), (n, ho, wo)  # no -1: batch 0 has none


def _ref_conv(node, args, ctx):
    x, w = args
    a, g = node.attrs, node.attrs["groups"]
    o, cg, kh, kw = w.shape
    cols, (n, ho, wo) = _cols(x, a, (kh, kw))
    wm = w.reshape(g, o // g, cg * kh * kw)
    y = np.matmul(cols, wm.transpose(0, 2, 1))  # (G, N*Ho*Wo, Og)
    return y.reshape(g, n, ho, wo, o // g).transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo)


def _ref_grad_input(node, args, ctx):
    gy, w = args
    a, groups = node.attrs, node.attrs["groups"]
    o, cg, kh, kw = w.shape
    n, _, ho, wo = gy.shape
    gm = gy.reshape(n, groups, o // groups, ho * wo).transpose(1, 0, 3, 2).reshape(groups, n * ho * wo, o // groups)
    cols = np.matmul(gm, w.reshape(groups, o // groups, cg * kh * kw))  # (G, N*Ho*Wo, Cg*kh*kw)
    cols = (
        cols.reshape(groups, n, ho, wo, cg, kh, kw)
        .transpose(1, 0, 4, 5, 6, 2, 3)
        .reshape(n, groups * cg, kh, kw, ho, wo)
    )
    h, wd = a["input_hw"]
    pad = a["padding"]
    out = np.zeros((n, groups * cg, h + pad[0] + pad[1], wd + pad[2] + pad[3]), np.result_type(gy, w))
    scatter_windows(out, lambda p, q: cols[:, :, p, q], (kh, kw), a["stride"], a["dilation"])
    return crop_nchw(out, pad, (h, wd))


def _ref_grad_weight(node, args, ctx):
    x, gy = args
    a, groups = node.attrs, node.attrs["groups"]
    o, cg, kh, kw = a["weight_shape"]
    cols, (n, ho, wo) = _cols(x, a, (kh, kw))
    gm = gy.reshape(n, groups, o // groups, ho * wo).transpose(1, 2, 0, 3).reshape(groups, o // groups, n * ho * wo)
    return np.matmul(gm, cols).reshape(o, cg, kh, kw)


# -- VJPs: the three ops are the partials of B(x, w, gy) = <conv2d(x, w), gy> ---------------
def _geometry(a):
    return {k: a[k] for k in ("stride", "padding", "dilation", "groups")}


def _conv(x, w, a):
    return apply("conv2d", [x, w], _geometry(a))


def _grad_input(gy, w, a, hw):
    return apply("conv2d_grad_input", [gy, w], {**_geometry(a), "input_hw": tuple(hw)})


def _grad_weight(x, gy, a, wshape):
    return apply("conv2d_grad_weight", [x, gy], {**_geometry(a), "weight_shape": tuple(wshape)})


def _vjp_conv(n, g, needs):
    x, w = n.inputs
    a = n.attrs
    return [
        _grad_input(g, w, a, x.shape[2:]) if needs[0] else None,
        _grad_weight(x, g, a, w.shape) if needs[1] else None,
    ]


def _vjp_grad_input(n, h, needs):
    gy, w = n.inputs
    a = n.attrs
    return [_conv(h, w, a) if needs[0] else None, _grad_weight(h, gy, a, w.shape) if needs[1] else None]


def _vjp_grad_weight(n, k, needs):
    x, gy = n.inputs
    a = n.attrs
    return [_grad_input(gy, k, a, x.shape[2:]) if needs[0] else None, _conv(x, k, a) if needs[1] else None]


register(
    OpDef(
        "conv2d",
        Kind.OUT_FUSABLE,
        _infer_conv,
        _ref_conv,
        _vjp_conv,
        doc="2-D cross-correlation, NCHW input, (O, C/groups, kh, kw) weight, no bias",
    )
)
register(
    OpDef(
        "conv2d_grad_input",
        Kind.OUT_FUSABLE,
        _infer_grad_input,
        _ref_grad_input,
        _vjp_grad_input,
        doc="gradient of conv2d wrt its input (the transposed convolution)",
    )
)
register(
    OpDef(
        "conv2d_grad_weight",
        Kind.OUT_FUSABLE,
        _infer_grad_weight,
        _ref_grad_weight,
        _vjp_grad_weight,
        doc="gradient of conv2d wrt its weight",
    )
)


# -- builders -------------------------------------------------------------------------------
def _padding(op, padding, k=None, dilation=None, stride=None):
    """(top, bottom, left, right) from an int, a pair, a pair of pairs, 'valid' or 'same'."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                error(AttributeValueError, op, f"padding='same' needs stride 1, got stride={stride}")
            th, tw = dilation[0] * (k[0] - 1), dilation[1] * (k[1] - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)  # extra row/column at the end
        error(AttributeValueError, op, f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, tuple | list) and len(padding) == 2 and all(isinstance(p, tuple | list) for p in padding):
        (t, b), (left, r) = pair(op, "padding", padding[0], 0), pair(op, "padding", padding[1], 0)
        return (t, b, left, r)
    ph, pw = pair(op, "padding", padding, 0)
    return (ph, ph, pw, pw)


def _attrs(op, w_shape, stride, padding, dilation, groups):
    if not _is_int(groups) or groups < 1:
        error(AttributeValueError, op, f"groups must be a positive int, got {groups!r}")
    stride = pair(op, "stride", stride, 1)
    dilation = pair(op, "dilation", dilation, 1)
    k = tuple(w_shape[2:]) if len(w_shape) == 4 else None
    if isinstance(padding, str) and padding == "same" and k is None:
        error(ShapeError, op, f"weight must be 4-D (O, C/groups, kh, kw), got shape {shapes.fmt(w_shape)}")
    return {
        "stride": stride,
        "padding": _padding(op, padding, k, dilation, stride),
        "dilation": dilation,
        "groups": int(groups),
    }


def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with w (O, C/groups, kh, kw).

    stride, dilation: int or (h, w). padding: int, (h, w), ((top, bottom), (left, right)),
    'valid' (no padding) or 'same' (output size = input size; stride 1 only). No bias: add
    it afterwards (`conv2d(x, w) + b.reshape(1, O, 1, 1)`) so it fuses into the conv kernel.
    """
    from graphc.ops.elementwise import coerce

    x, w = coerce("conv2d", x, w)
    return apply("conv2d", [x, w], _attrs("conv2d", w.shape, stride, padding, dilation, groups))


def conv2d_grad_input(g, w, input_hw, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of conv2d wrt its input (a transposed convolution), for inputs of size input_hw."""
    attrs = _attrs("conv2d_grad_input", w.shape, stride, padding, dilation, groups)
    return apply("conv2d_grad_input", [g, w], {**attrs, "input_hw": pair("conv2d_grad_input", "input_hw", input_hw, 1)})


def conv2d_grad_weight(x, g, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of conv2d wrt its weight, of shape weight_shape (O, C/groups, kh, kw)."""
    ws = tuple(weight_shape)
    if len(ws) != 4 or not all(_is_int(d) and d > 0 for d in ws):
        error(AttributeValueError, "conv2d_grad_weight", f"weight_shape must be 4 positive ints, got {weight_shape!r}")
    attrs = _attrs("conv2d_grad_weight", ws, stride, padding, dilation, groups)
    return apply("conv2d_grad_weight", [x, g], {**attrs, "weight_shape": tuple(int(d) for d in ws)})
