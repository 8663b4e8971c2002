"""Import rules: ONNX's neural-network ops (Conv, Gemm, MatMul, pooling, normalisation, LRN, softmax).

graphc's convolution and pooling are 2-D (NCHW); 1-D ONNX nodes are imported as 2-D ones over
an axis of size 1. Pads that graphc's pooling cannot take (asymmetric, wider than half the
kernel, ceil_mode) become an explicit pad before the pool; LRN is a composition (the squares
summed over a channel window by an average pool).
"""

import functools
import math
from typing import NamedTuple

import numpy as np

from graphc.ir import dtypes, shapes
from graphc.onnx.importer_registry import onnx_op
from graphc.ops import api as F

_CONV_ATTRS = {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}
_POOL_ATTRS = {"auto_pad", "kernel_shape", "pads", "strides", "ceil_mode", "dilations", "storage_order"}


def _spatial_input(n, x, what="input"):
    """x as 4-D NCHW (a 1-D node's input gets an H of 1), and whether it was 1-D."""
    if not dtypes.is_float(x.dtype):
        n.unsupported(f"{what} has dtype {x.dtype}; graphc convolves and pools float32 or float64")
    if x.ndim == 3:
        return F.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2])), True
    if x.ndim != 4:
        n.unsupported(f"{what} is {x.type_str}: graphc has 1-D and 2-D {n.op_type}, not {x.ndim - 2}-D")
    if not shapes.is_concrete(x.shape[1:]):
        n.unsupported(f"{what} {x.type_str} has symbolic channel or spatial dimensions")
    return x, False


def _per_axis(n, name, default, one_d):
    v = n.attr(name)
    if v is None:
        return (default, default)
    v = tuple(v)
    if len(v) != (1 if one_d else 2):
        n.unsupported(f"{name}={v} for a {1 if one_d else 2}-D {n.op_type}")
    return (default, v[0]) if one_d else v


def _explicit_pads(n, hw, kernel, strides, dilations, one_d):
    """(top, bottom, left, right) from pads or auto_pad, for an input of spatial size hw."""
    auto = n.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in zip(hw, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            out.append((lo, total - lo))
        return (*out[0], *out[1])
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        n.unsupported(f"auto_pad={auto!r}")
    pads = n.attr("pads")
    if pads is None:
        return (0, 0, 0, 0)
    pads = tuple(pads)
    if len(pads) != (2 if one_d else 4):
        n.unsupported(f"pads={pads} for a {1 if one_d else 2}-D {n.op_type}")
    if one_d:
        return (0, 0, pads[0], pads[1])
    return (pads[0], pads[2], pads[1], pads[3])


def _back_to_1d(y, one_d):
    return F.reshape(y, (y.shape[0], y.shape[1], y.shape[3])) if one_d else y


@onnx_op("Conv", since=1, attrs=_CONV_ATTRS)
def _conv(n):
    x, one_d = _spatial_input(n, n.input(0))
    w = n.input(1)
    if one_d:
        if w.ndim != 3:
            n.unsupported(f"weight {w.type_str} for a 1-D Conv")
        w = F.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))
    strides = _per_axis(n, "strides", 1, one_d)
    dilations = _per_axis(n, "dilations", 1, one_d)
    t, b, left, r = _explicit_pads(n, x.shape[2:], w.shape[2:], strides, dilations, one_d)
    y = F.conv2d(x, w, strides, ((t, b), (left, r)), dilations, n.attr("group", 1))
    if n.has(2):
        y = y + F.reshape(n.input(2), (1, -1, 1, 1))
    return _back_to_1d(y, one_d)


@onnx_op("ConvTranspose", since=1, attrs=_CONV_ATTRS | {"output_padding", "output_shape"})
def _conv_transpose(n):
    x, one_d = _spatial_input(n, n.input(0))
    w = n.input(1)
    if one_d:
        w = F.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))
    strides = _per_axis(n, "strides", 1, one_d)
    dilations = _per_axis(n, "dilations", 1, one_d)
    extra = _per_axis(n, "output_padding", 0, one_d)
    auto, shape = n.attr("auto_pad", "NOTSET"), n.attr("output_shape")
    if shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        # The output size is given (or is input * stride): the pads follow from it, as ONNX defines.
        if shape is None:
            shape = tuple(size * s for size, s in zip(x.shape[2:], strides))
        shape = tuple(shape)[-2:] if not one_d else (1, tuple(shape)[-1])
        pads, grown = [], []
        for size, s, d, k, e, out in zip(x.shape[2:], strides, dilations, w.shape[2:], extra, shape):
            total = s * (size - 1) + e + (k - 1) * d + 1 - out
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads.append((lo, total - lo) if total >= 0 else (0, 0))
            grown.append(e if total >= 0 else e - total)  # a larger output: rows and columns added at the end
        (t, b), (left, r) = pads
        extra = tuple(grown)
    else:
        t, b, left, r = _explicit_pads(n, x.shape[2:], w.shape[2:], strides, dilations, one_d)
    group = n.attr("group", 1)
    hw = [
        (size - 1) * s - lo - hi + d * (k - 1) + 1 + e
        for size, s, lo, hi, d, k, e in zip(x.shape[2:], strides, (t, left), (b, r), dilations, w.shape[2:], extra)
    ]
    y = F.conv2d_grad_input(x, w, tuple(hw), strides, ((t, b), (left, r)), dilations, group)
    if n.has(2):
        y = y + F.reshape(n.input(2), (1, -1, 1, 1))
    return _back_to_1d(y, one_d)


# -- pooling ----------------------------------------------------------------------------------------
def _pool_geometry(n, x, one_d):
    kernel = _per_axis(n, "kernel_shape", 1, one_d)
    strides = _per_axis(n, "strides", 1, one_d)
    dilations = tuple(_per_axis(n, "dilations", 1, one_d))
    if n.attr("storage_order", 0) != 0 or n.wants_output(1):
        n.unsupported("the Indices output and storage_order (graphc's max pool gives values only)")
    hw = x.shape[2:]
    t, b, left, r = _explicit_pads(n, hw, kernel, strides, dilations, one_d)
    ceil = n.attr("ceil_mode", 0)
    extra, outs = [], []
    for size, k, s, d, lo, hi in zip(hw, kernel, strides, dilations, (t, left), (b, r)):
        span = size + lo + hi - ((k - 1) * d + 1)
        out = (-(-span // s) if ceil else span // s) + 1
        if ceil and (out - 1) * s >= size + lo:
            out -= 1  # the last window would start in the end padding
        extra.append(max((out - 1) * s + (k - 1) * d + 1 - (size + lo + hi), 0))
        outs.append(out)
    return _Pool(kernel, strides, dilations, (t, b, left, r), extra, outs)


class _Pool(NamedTuple):
    kernel: tuple
    strides: tuple
    dilations: tuple
    pads: tuple  # (top, bottom, left, right)
    extra: list  # rows and columns ceil_mode adds at the end
    out: list  # the output's (H, W)

    @property
    def native(self) -> bool:
        """graphc's pooling takes it as it is (symmetric pads within half the kernel, no dilation)."""
        t, b, left, r = self.pads
        symmetric = t == b and left == r and 2 * t <= self.kernel[0] and 2 * left <= self.kernel[1]
        return symmetric and not any(self.extra) and self.dilations == (1, 1)

    def padding(self):
        t, b, left, r = self.pads
        return [(0, 0), (0, 0), (t, b + self.extra[0]), (left, r + self.extra[1])]

    def windows(self, xp):
        """Each kernel position's strided view of the padded input (a dilated pool reduces over them)."""
        (kh, kw), (sh, sw), (dh, dw), (ho, wo) = self.kernel, self.strides, self.dilations, self.out
        for i in range(kh):
            for j in range(kw):
                starts = [i * dh, j * dw]
                yield F.slice(
                    xp, starts, [starts[0] + (ho - 1) * sh + 1, starts[1] + (wo - 1) * sw + 1], [sh, sw], axes=[2, 3]
                )


@onnx_op("MaxPool", since=1, attrs=_POOL_ATTRS)
def _max_pool(n):
    x, one_d = _spatial_input(n, n.input(0))
    p = _pool_geometry(n, x, one_d)
    if p.native:
        return _back_to_1d(F.max_pool2d(x, p.kernel, p.strides, (p.pads[0], p.pads[2])), one_d)
    xp = F.pad(x, p.padding(), float(np.finfo(x.dtype).min))
    if p.dilations == (1, 1):
        return _back_to_1d(F.max_pool2d(xp, p.kernel, p.strides), one_d)
    return _back_to_1d(functools.reduce(F.maximum, p.windows(xp)), one_d)


@onnx_op("AveragePool", since=1, attrs=_POOL_ATTRS | {"count_include_pad"})
def _average_pool(n):
    x, one_d = _spatial_input(n, n.input(0))
    p = _pool_geometry(n, x, one_d)
    include = bool(n.attr("count_include_pad", 0))
    if p.native:
        y = F.avg_pool2d(x, p.kernel, p.strides, (p.pads[0], p.pads[2]), count_include_pad=include)
        return _back_to_1d(y, one_d)
    # The window sums over the zero-padded input, divided by the count of the elements that count.
    t, b, left, r = p.pads
    h, w = x.shape[2:]
    mask = np.zeros((1, 1, h + t + b + p.extra[0], w + left + r + p.extra[1]), x.dtype)
    if include:
        mask[:, :, : h + t + b, : w + left + r] = 1
    else:
        mask[:, :, t : t + h, left : left + w] = 1
    if p.dilations == (1, 1):
        area = float(p.kernel[0] * p.kernel[1])
        sums = F.avg_pool2d(F.pad(x, p.padding()), p.kernel, p.strides) * area
        counts = F.avg_pool2d(F.constant(mask, x.dtype), p.kernel, p.strides) * area
    else:
        sums = functools.reduce(F.add, p.windows(F.pad(x, p.padding())))
        counts = functools.reduce(F.add, p.windows(F.constant(mask, x.dtype)))
    return _back_to_1d(sums / counts, one_d)


def _global(n, reduce):
    x = n.input(0)
    if x.ndim < 3 or not dtypes.is_float(x.dtype):
        n.unsupported(f"input {x.type_str} (needs N, C and spatial axes, float)")
    return reduce(x, tuple(range(2, x.ndim)), keepdims=True)


@onnx_op("GlobalAveragePool", since=1)
def _global_average_pool(n):
    return _global(n, F.mean)


@onnx_op("GlobalMaxPool", since=1)
def _global_max_pool(n):
    return _global(n, F.max)


# -- dense ------------------------------------------------------------------------------------------
@onnx_op("MatMul", since=1)
def _matmul(n):
    return F.matmul(n.input(0), n.input(1))


@onnx_op("Gemm", since=7, attrs={"alpha", "beta", "transA", "transB"})
def _gemm(n):
    a, b = n.input(0), n.input(1)
    a = F.transpose(a) if n.attr("transA", 0) else a
    b = F.transpose(b) if n.attr("transB", 0) else b
    y = F.matmul(a, b)
    alpha, beta = n.attr("alpha", 1.0), n.attr("beta", 1.0)
    y = y * alpha if alpha != 1.0 else y
    if n.has(2) and beta != 0.0:
        c = n.input(2)
        y = y + (c * beta if beta != 1.0 else c)
    return y


# -- normalisation ----------------------------------------------------------------------------------
def _channel(v, x):
    """A per-channel (C,) vector shaped to broadcast against x (N, C, ...)."""
    return F.reshape(v, (1, -1, *([1] * (x.ndim - 2))))


@onnx_op("BatchNormalization", since=6, attrs={"epsilon", "momentum", "spatial", "is_test", "training_mode"})
def _batch_norm(n):
    """Inference: the running statistics given; training_mode=1: the batch's, and the running ones
    updated with `momentum` as the second and third outputs."""
    if n.attr("spatial", 1) != 1:
        n.unsupported("spatial=0 (per-activation statistics)")
    x, scale, bias, mean, var = (n.input(i) for i in range(5))
    eps = n.attr("epsilon", 1e-5)
    if not n.attr("training_mode", 0):
        inv = F.div(_channel(scale, x), F.sqrt(_channel(var, x) + eps))
        return (x - _channel(mean, x)) * inv + _channel(bias, x)
    axes = (0, *range(2, x.ndim))
    batch_mean = F.mean(x, axes)
    centred = x - _channel(batch_mean, x)
    batch_var = F.mean(centred * centred, axes)
    y = centred / F.sqrt(_channel(batch_var, x) + eps) * _channel(scale, x) + _channel(bias, x)
    momentum = n.attr("momentum", 0.9)
    return [y, mean * momentum + batch_mean * (1.0 - momentum), var * momentum + batch_var * (1.0 - momentum)]


@onnx_op("InstanceNormalization", since=6, attrs={"epsilon"})
def _instance_norm(n):
    x, scale, bias = n.input(0), n.input(1), n.input(2)
    axes = tuple(range(2, x.ndim))
    mean = F.mean(x, axes, keepdims=True)
    centred = x - mean
    var = F.mean(centred * centred, axes, keepdims=True)
    return centred / F.sqrt(var + n.attr("epsilon", 1e-5)) * _channel(scale, x) + _channel(bias, x)


@onnx_op("LayerNormalization", since=17, attrs={"axis", "epsilon", "stash_type"})
def _layer_norm(n):
    x = n.input(0)
    axis = n.attr("axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = F.mean(x, axes, keepdims=True)
    centred = x - mean
    inv_std = F.div(1.0, F.sqrt(F.mean(centred * centred, axes, keepdims=True) + n.attr("epsilon", 1e-5)))
    y = centred * inv_std * n.input(1)
    if n.has(2):
        y = y + n.input(2)
    return [y, mean, inv_std]


@onnx_op("LRN", since=1, attrs={"alpha", "beta", "bias", "size"})
def _lrn(n):
    """x / (bias + alpha / size * (sum of x^2 over a window of `size` channels))^beta."""
    x = n.input(0)
    size = n.attr("size")
    if x.ndim < 3 or not shapes.is_concrete(x.shape[1:]) or not dtypes.is_float(x.dtype):
        n.unsupported(f"input {x.type_str} (needs float N, C, spatial... with concrete C and spatial axes)")
    c, rest = x.shape[1], math.prod(x.shape[2:])
    sq = F.reshape(x * x, (x.shape[0], 1, c, rest))
    lo = (size - 1) // 2
    window = F.avg_pool2d(F.pad(sq, [(0, 0), (0, 0), (lo, size - 1 - lo), (0, 0)]), (size, 1), (1, 1))
    total = F.reshape(window, x.shape) * float(size)
    scale = total * (n.attr("alpha", 1e-4) / size) + n.attr("bias", 1.0)
    return x / F.pow(scale, n.attr("beta", 0.75))


# -- softmax ----------------------------------------------------------------------------------------
def _softmax(fn, coerced):
    def rule(n):
        x = n.input(0)
        axis = n.attr("axis", 1 if coerced else -1) % max(x.ndim, 1)
        if not coerced or axis == x.ndim - 1:
            return fn(x, axis)
        tail = x.shape[axis:]
        if not shapes.is_concrete(tail):
            n.unsupported(f"axis {axis} of {x.type_str}: the axes it flattens are symbolic")
        flat = F.reshape(x, (-1, math.prod(tail)) if axis else (1, math.prod(tail)))
        return F.reshape(fn(flat, -1), x.shape)

    return rule


for _op, _fn in (("Softmax", F.softmax), ("LogSoftmax", F.log_softmax)):
    onnx_op(_op, since=1, attrs={"axis"})(_softmax(_fn, coerced=True))
    onnx_op(_op, since=13, attrs={"axis"})(_softmax(_fn, coerced=False))


def _hardmax(coerced):
    def one_hot_max(x, axis):
        return F.one_hot(F.argmax(x, axis), x.shape[axis], x.dtype, axis)

    return _softmax(one_hot_max, coerced)


onnx_op("Hardmax", since=1, attrs={"axis"})(_hardmax(True))
onnx_op("Hardmax", since=13, attrs={"axis"})(_hardmax(False))
