"""Reductions over axes: sum, mean, max, min, argmax; sum_to (undoing broadcasting).

The keyword is `axis` (an int, a tuple, or None for all), as in NumPy; the reductions also take
it as `axes=`, the name of their node attribute (`sum(%3, axes=(0, 1))` in the text form).
"""

import math

import numpy as np

from graphc.errors import DTypeError, ShapeError
from graphc.ir import dtypes, shapes
from graphc.ops.registry import (
    F,
    Kind,
    OpDef,
    apply,
    axis_or_axes,
    checked_axes,
    checked_axis,
    constant,
    error,
    register,
)
from graphc.ops.rows import reduce_rows, summed_rows

__all__ = ["sum", "mean", "max", "min", "argmax", "sum_to", "shape_size"]


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _infer_reduce(inputs, attrs):
    x = inputs[0]
    if shapes.normalize_axes(attrs["axes"], x.ndim) != tuple(attrs["axes"]):
        raise ShapeError(f"axes {attrs['axes']} must be sorted, unique and within rank {x.ndim}")
    dt = "int64" if x.dtype == "bool" else x.dtype
    return _reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]), dt


def _infer_mean(inputs, attrs):
    if not dtypes.is_float(inputs[0].dtype):
        raise DTypeError(f"needs a float input, got {inputs[0].dtype}")
    return _infer_reduce(inputs, attrs)


def _keep(g, n):
    """g reshaped so it broadcasts against n's input (reduced axes kept as size 1)."""
    x = n.inputs[0]
    if n.attrs["keepdims"]:
        return g
    return F.reshape(g, _reduced_shape(x.shape, n.attrs["axes"], True))


def _vjp_sum(n, g, needs):
    return [F.broadcast_to(_keep(g, n), n.inputs[0].shape)]


def _vjp_mean(n, g, needs):
    x = n.inputs[0]
    return [F.broadcast_to(_keep(g, n), x.shape) / shape_size(x, n.attrs["axes"], x.dtype)]


def _vjp_max(n, g, needs):
    x = n.inputs[0]
    axes = n.attrs["axes"]
    mask = F.cast(F.equal(x, _keep(n, n)), x.dtype)
    count = F.sum(mask, axes, keepdims=True)  # ties share the gradient
    return [_keep(g, n) * mask / count]


def _ref(fn):
    return lambda n, a, c: np.asarray(fn(a[0], axis=n.attrs["axes"], keepdims=n.attrs["keepdims"]), n.dtype)


register(OpDef("sum", Kind.REDUCTION, _infer_reduce, _ref(np.sum), _vjp_sum, rows=summed_rows, doc="sum over axes"))
register(OpDef("mean", Kind.REDUCTION, _infer_mean, _ref(np.mean), _vjp_mean, rows=reduce_rows, doc="mean over axes"))
register(OpDef("max", Kind.REDUCTION, _infer_reduce, _ref(np.max), _vjp_max, rows=reduce_rows, doc="max over axes"))


def sum(x, axis=None, keepdims: bool = False, *, axes=None):
    """Sum over `axis` (an int, a tuple, or None for all; `axes=` is the same)."""
    axis = axis_or_axes("sum", axis, axes)
    return apply("sum", [x], {"axes": checked_axes("sum", axis, x), "keepdims": bool(keepdims)})


def mean(x, axis=None, keepdims: bool = False, *, axes=None):
    """Mean over `axis` (or `axes=`); integer inputs are cast to float32 first."""
    axis = axis_or_axes("mean", axis, axes)
    if not dtypes.is_float(x.dtype):
        x = F.cast(x, dtypes.DEFAULT_FLOAT)
    return apply("mean", [x], {"axes": checked_axes("mean", axis, x), "keepdims": bool(keepdims)})


def max(x, axis=None, keepdims: bool = False, *, axes=None):
    """Max over `axis` (or `axes=`); the gradient is shared among tied maxima."""
    axes = checked_axes("max", axis_or_axes("max", axis, axes), x)
    for a in axes:
        if x.shape[a] == 0:
            error(ShapeError, "max", f"cannot reduce over empty axis {a} of {x.type_str}")
    return apply("max", [x], {"axes": axes, "keepdims": bool(keepdims)})


def min(x, axis=None, keepdims: bool = False, *, axes=None):
    """Min over `axis` (or `axes=`): -max(-x)."""
    axes = checked_axes("min", axis_or_axes("min", axis, axes), x)  # before -x: a refused call adds no node
    return -max(-x, axes, keepdims)


def _infer_argmax(inputs, attrs):
    x = inputs[0]
    return _reduced_shape(x.shape, (attrs["axis"],), attrs["keepdims"]), "int64"


register(
    OpDef(
        "argmax",
        Kind.REDUCTION,
        _infer_argmax,
        lambda n, a, c: np.asarray(np.argmax(a[0], axis=n.attrs["axis"], keepdims=n.attrs["keepdims"]), "int64"),
        None,
        doc="index of the max along axis (not differentiable)",
    )
)


def argmax(x, axis: int = -1, keepdims: bool = False):
    ax = checked_axis("argmax", axis, x)
    return apply("argmax", [x], {"axis": ax, "keepdims": bool(keepdims)})


# -- sizes known only at run time -----------------------------------------------------------
def _infer_shape_size(inputs, attrs):
    return (), attrs["dtype"]


register(
    OpDef(
        "shape_size",
        Kind.OPAQUE,
        _infer_shape_size,
        lambda n, a, c: np.asarray(math.prod(a[0].shape[i] for i in n.attrs["axes"]), n.dtype),
        None,
        reads_values=False,
        doc="product of x's dimensions along axes, as a scalar (for symbolic dims)",
    )
)


def shape_size(x, axis=None, dtype: str = dtypes.DEFAULT_FLOAT, *, axes=None):
    """The number of elements along `axis` of x (or `axes=`; None: all): a constant when those
    dims are concrete."""
    axes = checked_axes("shape_size", axis_or_axes("shape_size", axis, axes), x)
    dims = [x.shape[a] for a in axes]
    if all(isinstance(d, int) for d in dims):
        return constant(math.prod(dims), dtype, graph=x.graph)
    return apply("shape_size", [x], {"axes": tuple(axes), "dtype": dtype})


def sum_to(g, shape):
    """Sum g down to `shape`, undoing NumPy broadcasting (used by gradient rules)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead < 0 or any(d != 1 and d != e for d, e in zip(shape, g.shape[lead:])):  # else reshape would hide it
        msg = f"cannot sum {g.type_str} down to {shapes.fmt(shape)}, which does not broadcast to {shapes.fmt(g.shape)}"
        error(ShapeError, "sum_to", msg)
    axes = list(range(lead))
    axes += [lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1]
    out = sum(g, tuple(axes)) if axes else g
    return out if out.shape == shape else F.reshape(out, shape)
