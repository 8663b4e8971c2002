"""2-D max and average pooling in NCHW, and the ops their gradients are written in.

The ops close under differentiation, so second-order gradients work:
  avg_pool2d  <-> avg_pool2d_grad            (linear maps, each the other's adjoint)
  max_pool2d  -> max_pool2d_grad(x, g)       (routes g to the first max of each window)
  max_pool2d_grad <-> max_pool2d_gather(x, h) (reads h at each window's first max)
x gets no gradient through the last two: the window selections are piecewise constant in x.
"""

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, ShapeError
from graphc.ir import dtypes
from graphc.ops.conv import crop_nchw, out_size, pad_nchw, pair, scatter_windows, spatial, windows
from graphc.ops.registry import Kind, OpDef, apply, error, register

__all__ = ["max_pool2d", "avg_pool2d", "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d_grad"]


# -- shape rules ----------------------------------------------------------------------------
def _pooled_hw(hw, a):
    """(Ho, Wo) of pooling an input of spatial size hw with attrs a."""
    (kh, kw), (sh, sw), pad = a["kernel"], a["stride"], a["padding"]
    hp, wp = hw[0] + 2 * pad[0], hw[1] + 2 * pad[2]
    if kh > hp or kw > wp:
        raise ShapeError(f"kernel {kh}x{kw} is larger than the padded input {hp}x{wp}")
    return out_size(hw[0], kh, sh, 2 * pad[0]), out_size(hw[1], kw, sw, 2 * pad[2])


def _pooled(x, a):
    """(N, C, Ho, Wo) of pooling x (N, C, H, W) with attrs a."""
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"needs a float input, got {x.dtype}")
    return (*x.shape[:2], *_pooled_hw(spatial(x, "input"), a))


def _same_type(x, g, want, what):
    if g.dtype != x.dtype:
        raise DTypeError(f"dtypes differ: {x.dtype} and {g.dtype}")
    if tuple(g.shape) != tuple(want):
        raise ShapeError(f"{what} should have shape [{','.join(map(str, want))}], got {g.type_str}")


def _infer_pool(inputs, a):
    return _pooled(inputs[0], a), inputs[0].dtype


def _infer_max_grad(inputs, a):  # (x, g): g has the pooled shape
    x, g = inputs
    _same_type(x, g, _pooled(x, a), "the output gradient")
    return x.shape, x.dtype


def _infer_gather(inputs, a):  # (x, h): h has x's shape
    x, h = inputs
    _same_type(x, h, x.shape, "the gathered value")
    return _pooled(x, a), x.dtype


def _infer_avg_grad(inputs, a):
    g = inputs[0]
    if not dtypes.is_float(g.dtype):
        raise DTypeError(f"needs a float input, got {g.dtype}")
    if g.ndim != 4:
        raise ShapeError(f"output gradient must be 4-D (N, C, Ho, Wo), got {g.type_str}")
    want = _pooled_hw(a["input_hw"], a)
    if tuple(g.shape[2:]) != want:
        raise ShapeError(f"output gradient should be {want[0]}x{want[1]} for input size {a['input_hw']}")
    return (*g.shape[:2], *a["input_hw"]), g.dtype


# -- NumPy references -----------------------------------------------------------------------
def _flat_windows(xp, a):
    v = windows(xp, a["kernel"], a["stride"])
    return v.reshape(*v.shape[:4], v.shape[4] * v.shape[5])  # (N, C, Ho, Wo, kh*kw), a copy (no -1: batch 0)


def _argmax(x, a):
    """Index in the flattened kernel window of each window's first maximum (padding is -inf)."""
    return np.argmax(_flat_windows(pad_nchw(x, a["padding"], -np.inf), a), axis=-1)


def _ref_max(node, args, ctx):
    return np.max(_flat_windows(pad_nchw(args[0], node.attrs["padding"], -np.inf), node.attrs), axis=-1)


def _ref_max_grad(node, args, ctx):
    x, g = args
    a = node.attrs
    arg, kw = _argmax(x, a), a["kernel"][1]
    pad = a["padding"]
    out = np.zeros((*x.shape[:2], x.shape[2] + 2 * pad[0], x.shape[3] + 2 * pad[2]), g.dtype)
    zero = g.dtype.type(0)
    scatter_windows(out, lambda p, q: np.where(arg == p * kw + q, g, zero), a["kernel"], a["stride"])
    return crop_nchw(out, pad, x.shape[2:])


def _ref_gather(node, args, ctx):
    x, h = args
    a = node.attrs
    hw = _flat_windows(pad_nchw(h, a["padding"]), a)
    return np.take_along_axis(hw, _argmax(x, a)[..., None], axis=-1)[..., 0]


def _counts(a, hw):
    """(Ho, Wo) number of elements each window divides by."""
    (kh, kw), (sh, sw), pad = a["kernel"], a["stride"], a["padding"]
    ho, wo = out_size(hw[0], kh, sh, 2 * pad[0]), out_size(hw[1], kw, sw, 2 * pad[2])
    if a["count_include_pad"]:
        return np.full((ho, wo), kh * kw)

    def real(n_out, size, k, s, p):  # real (unpadded) elements along one axis of each window
        start = np.arange(n_out) * s - p
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.outer(real(ho, hw[0], kh, sh, pad[0]), real(wo, hw[1], kw, sw, pad[2]))


def _ref_avg(node, args, ctx):
    x, a = args[0], node.attrs
    s = _flat_windows(pad_nchw(x, a["padding"]), a).sum(axis=-1)
    return s / _counts(a, x.shape[2:]).astype(x.dtype)


def _ref_avg_grad(node, args, ctx):
    g, a = args[0], node.attrs
    (h, w), pad = a["input_hw"], a["padding"]
    share = g / _counts(a, (h, w)).astype(g.dtype)
    out = np.zeros((*g.shape[:2], h + 2 * pad[0], w + 2 * pad[2]), g.dtype)
    scatter_windows(out, lambda p, q: share, a["kernel"], a["stride"])
    return crop_nchw(out, pad, (h, w))


# -- VJPs -----------------------------------------------------------------------------------
def _vjp_max(n, g, needs):
    return [apply("max_pool2d_grad", [n.inputs[0], g], n.attrs)]


def _vjp_max_grad(n, k, needs):  # (x, g) -> none for x, gather(x, k) for g
    return [None, apply("max_pool2d_gather", [n.inputs[0], k], n.attrs) if needs[1] else None]


def _vjp_gather(n, g, needs):  # (x, h) -> none for x, max_pool2d_grad(x, g) for h
    return [None, apply("max_pool2d_grad", [n.inputs[0], g], n.attrs) if needs[1] else None]


def _vjp_avg(n, g, needs):
    return [apply("avg_pool2d_grad", [g], {**n.attrs, "input_hw": tuple(n.inputs[0].shape[2:])})]


def _vjp_avg_grad(n, k, needs):
    return [apply("avg_pool2d", [k], {key: v for key, v in n.attrs.items() if key != "input_hw"})]


register(
    OpDef(
        "max_pool2d",
        Kind.OUT_FUSABLE,
        _infer_pool,
        _ref_max,
        _vjp_max,
        doc="max over kh x kw windows of NCHW input (padding counts as -inf)",
    )
)
register(
    OpDef(
        "max_pool2d_grad",
        Kind.OPAQUE,
        _infer_max_grad,
        _ref_max_grad,
        _vjp_max_grad,
        doc="routes each window's gradient to the first max of that window of x",
    )
)
register(
    OpDef(
        "max_pool2d_gather",
        Kind.OPAQUE,
        _infer_gather,
        _ref_gather,
        _vjp_gather,
        doc="reads h at the first max of each window of x (adjoint of max_pool2d_grad)",
    )
)
register(
    OpDef(
        "avg_pool2d", Kind.OUT_FUSABLE, _infer_pool, _ref_avg, _vjp_avg, doc="mean over kh x kw windows of NCHW input"
    )
)
register(
    OpDef(
        "avg_pool2d_grad",
        Kind.OPAQUE,
        _infer_avg_grad,
        _ref_avg_grad,
        _vjp_avg_grad,
        doc="spreads each window's gradient evenly over the window (adjoint of avg_pool2d)",
    )
)


# -- builders -------------------------------------------------------------------------------
def _attrs(op, kernel, stride, padding):
    k = pair(op, "kernel", kernel, 1)
    s = k if stride is None else pair(op, "stride", stride, 1)
    ph, pw = pair(op, "padding", padding, 0)
    if 2 * ph > k[0] or 2 * pw > k[1]:
        error(AttributeValueError, op, f"padding {(ph, pw)} must be at most half the kernel {k}")
    return {"kernel": k, "stride": s, "padding": (ph, ph, pw, pw)}


def _node(op, x):
    from graphc.ir.node import Node

    if not isinstance(x, Node):
        error(DTypeError, op, f"needs a graph node, got {type(x).__name__}")
    return x


def max_pool2d(x, kernel, stride=None, padding=0):
    """Max over kernel windows of x (N, C, H, W); stride defaults to kernel; padding is -inf."""
    return apply("max_pool2d", [_node("max_pool2d", x)], _attrs("max_pool2d", kernel, stride, padding))


def avg_pool2d(x, kernel, stride=None, padding=0, count_include_pad: bool = True):
    """Mean over kernel windows of x (N, C, H, W); stride defaults to kernel.

    count_include_pad=True divides by the window size, False by the unpadded elements in it.
    """
    attrs = {**_attrs("avg_pool2d", kernel, stride, padding), "count_include_pad": bool(count_include_pad)}
    return apply("avg_pool2d", [_node("avg_pool2d", x)], attrs)


def max_pool2d_grad(x, g, kernel, stride=None, padding=0):
    """The gradient of max_pool2d(x): g (pooled shape) routed to each window's first max."""
    return apply("max_pool2d_grad", [x, g], _attrs("max_pool2d_grad", kernel, stride, padding))


def max_pool2d_gather(x, h, kernel, stride=None, padding=0):
    """h (x's shape) read at the first max of each max_pool2d window of x."""
    return apply("max_pool2d_gather", [x, h], _attrs("max_pool2d_gather", kernel, stride, padding))


def avg_pool2d_grad(g, input_hw, kernel, stride=None, padding=0, count_include_pad: bool = True):
    """The gradient of avg_pool2d for an input of spatial size input_hw."""
    attrs = {**_attrs("avg_pool2d_grad", kernel, stride, padding), "count_include_pad": bool(count_include_pad)}
    return apply("avg_pool2d_grad", [g], {**attrs, "input_hw": pair("avg_pool2d_grad", "input_hw", input_hw, 1)})
