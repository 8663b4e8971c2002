"""Shape ops: reshape, flatten, squeeze/expand_dims, transpose, broadcast_to, zeros_like."""

import math

import numpy as np

from graphc.errors import AttributeValueError, GraphcError, ShapeError
from graphc.ir import dtypes, shapes
from graphc.ir.node import Node
from graphc.ops.registry import (
    F,
    Kind,
    OpDef,
    apply,
    as_node,
    axis_or_axes,
    checked_axes,
    checked_axis,
    checked_value,
    constant,
    error,
    register,
)
from graphc.ops.rows import permuted_rows

__all__ = [
    "reshape",
    "flatten",
    "expand_dims",
    "squeeze",
    "transpose",
    "permute",
    "swapaxes",
    "broadcast_to",
    "zeros_like",
    "ones_like",
    "full_like",
]


# -- reshape --------------------------------------------------------------------------------
def _target_shape(src, target):
    """Resolve -1 in target, with symbolic dims matched by name."""
    if target.count(-1) > 1:
        raise ShapeError(f"target {target} has more than one -1")
    src_sym = sorted(d for d in src if isinstance(d, str))
    tgt_sym = sorted(d for d in target if isinstance(d, str))
    src_int = math.prod(d for d in src if isinstance(d, int))
    tgt_int = math.prod(d for d in target if isinstance(d, int) and d != -1)
    if -1 not in target:
        if src_sym != tgt_sym or src_int != tgt_int:
            raise ShapeError(f"cannot reshape {shapes.fmt(src)} to {shapes.fmt(target)}")
        return target
    rest = list(src_sym)
    for s in tgt_sym:
        if s not in rest:
            raise ShapeError(f"cannot reshape {shapes.fmt(src)} to {shapes.fmt(target)}: {s!r} is not in the input")
        rest.remove(s)
    if tgt_int == 0 or src_int % tgt_int:
        raise ShapeError(f"cannot reshape {shapes.fmt(src)} to {shapes.fmt(target)}")
    fill = src_int // tgt_int
    if rest:
        if len(rest) > 1 or fill != 1:
            raise ShapeError(
                f"cannot infer -1 in {shapes.fmt(target)} from {shapes.fmt(src)}: it would mix symbolic dims"
            )
        fill = rest[0]
    return tuple(fill if d == -1 else d for d in target)


def _infer_reshape(inputs, attrs):
    return _target_shape(inputs[0].shape, attrs["shape"]), inputs[0].dtype


register(
    OpDef(
        "reshape",
        Kind.INJECTIVE,
        _infer_reshape,
        lambda n, a, c: np.reshape(a[0], c.concrete(n.shape)),
        lambda n, g, needs: [reshape(g, n.inputs[0].shape)],
        doc="same elements, new shape (C order)",
    )
)


def reshape(x, shape):
    """Reshape x; one dim may be -1; symbolic dims must appear on both sides."""
    if isinstance(shape, int | str):
        shape = (shape,)
    shape = tuple(shape)
    for d in shape:
        if not (isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= -1)):
            error(ShapeError, "reshape", f"bad target dimension {d!r} in {shape}")
    if shape == x.shape:
        return x
    return apply("reshape", [x], {"shape": shape})


def flatten(x, start_axis: int = 1):
    """Collapse axes start_axis.. into one: (batch, C, H, W) -> (batch, C*H*W)."""
    start = checked_axis("flatten", start_axis, x)
    tail = x.shape[start:]
    if not shapes.is_concrete(tail):
        if len(tail) == 1:
            return x
        error(ShapeError, "flatten", f"cannot flatten symbolic dims {shapes.fmt(tail)} of {x.type_str}")
    return reshape(x, (*x.shape[:start], math.prod(tail)))


def expand_dims(x, axis: int):
    axis = checked_axis("expand_dims", axis, x, rank=x.ndim + 1)
    return reshape(x, (*x.shape[:axis], 1, *x.shape[axis:]))


def squeeze(x, axis=None, *, axes=None):
    """x without the size-1 axes `axis` (an int or a tuple; `axes=` is the same; None: every one)."""
    axis = axis_or_axes("squeeze", axis, axes)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else checked_axes("squeeze", axis, x)
    for a in axes:
        if x.shape[a] != 1:
            error(ShapeError, "squeeze", f"axis {a} of {x.type_str} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


# -- transpose ------------------------------------------------------------------------------
def _infer_transpose(inputs, attrs):
    x = inputs[0]
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"perm {perm} is not a permutation of the {x.ndim} axes")
    return tuple(x.shape[p] for p in perm), x.dtype


register(
    OpDef(
        "transpose",
        Kind.INJECTIVE,
        _infer_transpose,
        lambda n, a, c: np.transpose(a[0], n.attrs["perm"]),
        lambda n, g, needs: [transpose(g, tuple(int(i) for i in np.argsort(n.attrs["perm"])))],
        rows=permuted_rows,
        doc="permute axes",
    )
)


def transpose(x, perm=None):
    """Permute axes (default: reverse them)."""
    if perm is not None and not isinstance(perm, tuple | list):
        error(AttributeValueError, "transpose", f"perm must be a tuple of axes, got {perm!r}")
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(checked_axis("transpose", p, x) for p in perm)
    if perm == tuple(range(x.ndim)):
        return x
    return apply("transpose", [x], {"perm": perm})


permute = transpose


def swapaxes(x, a: int = -1, b: int = -2):
    perm = list(range(x.ndim))
    a, b = checked_axis("swapaxes", a, x), checked_axis("swapaxes", b, x)
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, tuple(perm))


# -- broadcast ------------------------------------------------------------------------------
def _infer_broadcast_to(inputs, attrs):
    x, shape = inputs[0], attrs["shape"]
    if shapes.broadcast(x.shape, shape) != shape:
        raise ShapeError(f"cannot broadcast {x.type_str} to {shapes.fmt(shape)}")
    return shape, x.dtype


register(
    OpDef(
        "broadcast_to",
        Kind.BROADCAST,
        _infer_broadcast_to,
        lambda n, a, c: np.broadcast_to(a[0], c.concrete(n.shape)),
        lambda n, g, needs: [F.sum_to(g, n.inputs[0].shape)],
        doc="repeat along size-1 and new leading axes",
    )
)


def broadcast_to(x, shape):
    shape = shapes.normalize(shape, "broadcast_to shape")
    x = as_node(x) if not isinstance(x, Node) else x
    if x.shape == shape:
        return x
    return apply("broadcast_to", [x], {"shape": shape})


def _infer_full_like(inputs, attrs):
    return inputs[0].shape, attrs["dtype"]


register(
    OpDef(
        "full_like",
        Kind.ELEMENTWISE,
        _infer_full_like,
        lambda n, a, c: np.full(a[0].shape, n.attrs["value"], n.dtype),
        None,
        scalar=lambda attrs: repr(attrs["value"]),
        reads_values=False,
        doc="an array of x's (run-time) shape filled with value; reads only x's shape",
    )
)


def full_like(x, value, dtype=None):
    """x's shape filled with `value`: a broadcast constant when the shape is known, else an op
    that reads the shape when the graph runs (symbolic dims)."""
    if not isinstance(x, Node):  # zeros_like and ones_like too; as apply() says for other ops
        error(GraphcError, "full_like", f"input 0 must be a graph node, got {type(x).__name__} {x!r:.60}")
    dtype = dtypes.canonical(dtype or x.dtype)
    value = checked_value("full_like", value, dtype)
    if value.ndim != 0:
        error(ShapeError, "full_like", f"value must be a scalar, got shape {value.shape}")
    if shapes.is_concrete(x.shape):
        return broadcast_to(constant(value, dtype, graph=x.graph), x.shape)
    return apply("full_like", [x], {"value": value.item(), "dtype": dtype})


def zeros_like(x, dtype=None):
    return full_like(x, 0, dtype)


def ones_like(x, dtype=None):
    return full_like(x, 1, dtype)
