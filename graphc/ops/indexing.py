"""Indexing ops: slice (and its scatter, slice_grad), getitem, concat, split, stack, take
(gather, and its scatter-add take_grad), one_hot, pad.

Slices are static: starts, stops and steps are Python ints fixed at declaration, so every
output shape is known. A symbolic dimension (e.g. 'batch') may only be kept whole.
"""

import builtins
import math

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, IndexRangeError, ShapeError, where
from graphc.ir import dtypes, shapes
from graphc.ir.node import Node, TupleType
from graphc.ops.registry import (
    F,
    Kind,
    OpDef,
    apply,
    as_node,
    axis_or_axes,
    checked_axis,
    constant,
    error,
    register,
)
from graphc.ops.rows import same_rows, sliced_rows

__all__ = ["slice", "concat", "split", "stack", "take", "gather", "one_hot", "pad"]

_pyslice = builtins.slice  # this module exports its own `slice`


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _fmt_index(entry) -> str:
    if entry is None:
        return ":"
    start, stop, step = entry
    return f"{start}:{'' if stop is None else stop}:{step}"


# -- slice ----------------------------------------------------------------------------------
# attrs["index"] holds one entry per axis: None keeps the axis whole, (start, stop, step) are
# the normalised bounds of Python's slice.indices (stop None: run past index 0 with step < 0).


def _entry_len(entry, dim):
    if entry is None:
        return dim
    start, stop, step = entry
    return len(range(start, -1 if stop is None else stop, step))


def _entry_slice(entry):
    return _pyslice(None) if entry is None else _pyslice(*entry)


def _check_index(index, shape):
    if len(index) != len(shape):
        raise ShapeError(f"index has {len(index)} entries for rank {len(shape)}")
    for axis, (entry, dim) in enumerate(zip(index, shape)):
        if entry is None:
            continue
        if not isinstance(dim, int):
            raise ShapeError(f"axis {axis} has symbolic size {dim!r}; it can only be kept whole")
        start, stop, step = entry
        if step == 0 or not 0 <= start <= dim or not (stop is None or -1 <= stop <= dim):
            raise ShapeError(f"bad bounds {_fmt_index(entry)} for axis {axis} of size {dim}")


def _infer_slice(inputs, attrs):
    x = inputs[0]
    _check_index(attrs["index"], x.shape)
    return tuple(_entry_len(e, d) for e, d in zip(attrs["index"], x.shape)), x.dtype


def _infer_slice_grad(inputs, attrs):
    g, shape = inputs[0], attrs["shape"]
    _check_index(attrs["index"], shape)
    want = tuple(_entry_len(e, d) for e, d in zip(attrs["index"], shape))
    if g.shape != want:
        raise ShapeError(f"gradient {shapes.fmt(g.shape)} does not match the slice's shape {shapes.fmt(want)}")
    return shape, g.dtype


def _ref_slice(n, a, c):
    return a[0][tuple(_entry_slice(e) for e in n.attrs["index"])]


def _ref_slice_grad(n, a, c):
    out = np.zeros(c.concrete(n.shape), n.dtype)
    out[tuple(_entry_slice(e) for e in n.attrs["index"])] = a[0]
    return out


register(OpDef(
    "slice", Kind.INJECTIVE, _infer_slice, _ref_slice,
    lambda n, g, needs: [_slice_grad(g, n.attrs["index"], n.inputs[0].shape)], rows=sliced_rows,
    doc="x[start:stop:step, ...] with static bounds per axis",
))  # fmt: skip
register(OpDef(
    "slice_grad", Kind.INJECTIVE, _infer_slice_grad, _ref_slice_grad,
    lambda n, g, needs: [_apply_slice(g, n.attrs["index"])],
    doc="zeros of `shape` with g written into the sliced region (the VJP of slice)",
))  # fmt: skip


def _slice_grad(g, index, shape):
    if all(e is None for e in index):
        return g
    return apply("slice_grad", [g], {"index": tuple(index), "shape": tuple(shape)})


def _apply_slice(x, index):
    index = tuple(index)
    if all(e is None for e in index):
        return x
    return apply("slice", [x], {"index": index})


def _norm_slice(op, s, dim, axis, x):
    """A Python slice on an axis of size dim -> an index entry (None when it keeps it whole)."""
    for v in (s.start, s.stop, s.step):
        if v is not None and not _is_int(v):
            error(AttributeValueError, op, f"slice bounds must be ints or None, got {s} for axis {axis}")
    if s.step == 0:
        error(AttributeValueError, op, f"slice step cannot be zero (axis {axis} of {x.type_str})")
    if not isinstance(dim, int):
        if s.start is None and s.stop is None and s.step in (None, 1):
            return None
        error(ShapeError, op, f"cannot slice symbolic dimension {dim!r} (axis {axis} of {x.type_str}) "
                              f"with {s}: only ':' is allowed on a symbolic dimension")  # fmt: skip
    start, stop, step = s.indices(dim)
    if step > 0 and stop < start:
        stop = start  # empty slice; keeps the stored bounds within [0, dim]
    if step < 0 and stop < 0:
        stop = None
    if (start, stop, step) == (0, dim, 1):
        return None
    return (int(start), None if stop is None else int(stop), int(step))


def slice(x, starts, stops, steps=None, axis=None, *, axes=None):
    """x sliced along `axis` (a tuple or list, one axis per bound; default 0..len(starts)-1; `axes=`
    is the same) like x[start:stop:step]; static bounds.

    Bounds follow Python: negative values count from the end, None means open.
    """
    axis = axis_or_axes("slice", axis, axes)
    for what, v in (("starts", starts), ("stops", stops), ("steps", steps), ("axis", axis)):
        if not (isinstance(v, tuple | list) or (v is None and what in ("steps", "axis"))):
            error(AttributeValueError, "slice", f"{what} must be a tuple or list, got {v!r}")
    n = len(starts)
    axis = tuple(range(n)) if axis is None else tuple(axis)
    steps = (None,) * n if steps is None else tuple(steps)
    if not len(stops) == len(steps) == len(axis) == n:
        error(AttributeValueError, "slice", f"starts, stops, steps and axis differ in length: "
                                            f"{starts}, {stops}, {steps}, {axis}")  # fmt: skip
    norm = [checked_axis("slice", a, x) for a in axis]
    if len(set(norm)) != n:
        error(AttributeValueError, "slice", f"repeated axis in {axis}")
    index = [None] * x.ndim
    for a, b, e, s in zip(norm, starts, stops, steps):
        index[a] = _norm_slice("slice", _pyslice(b, e, s), x.shape[a], a, x)
    return _apply_slice(x, index)


# -- getitem --------------------------------------------------------------------------------
# -- concat, split, stack -------------------------------------------------------------------
def _infer_concat(inputs, attrs):
    ax = attrs["axis"]
    first = inputs[0]
    if len({x.dtype for x in inputs}) > 1:
        raise DTypeError(f"dtypes differ: {', '.join(sorted({x.dtype for x in inputs}))}")
    if not 0 <= ax < first.ndim:
        raise ShapeError(f"axis {ax} is out of range for rank {first.ndim}")
    total = 0
    for x in inputs:
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape)) if i != ax):
            raise ShapeError(f"shapes must agree except along axis {ax}")
        if not isinstance(x.shape[ax], int):
            raise ShapeError(f"cannot concatenate along symbolic dimension {x.shape[ax]!r}")
        total += x.shape[ax]
    return (*first.shape[:ax], total, *first.shape[ax + 1 :]), first.dtype


def _vjp_concat(n, g, needs):
    ax, out, start = n.attrs["axis"], [], 0
    for x, need in zip(n.inputs, needs):
        size = x.shape[ax]
        index = [None] * g.ndim
        index[ax] = None if size == g.shape[ax] else (start, start + size, 1)
        out.append(_apply_slice(g, index) if need else None)
        start += size
    return out


register(OpDef(
    "concat", Kind.INJECTIVE, _infer_concat,
    lambda n, a, c: np.concatenate(a, axis=n.attrs["axis"]), _vjp_concat, rows=same_rows(),
    doc="join inputs along an existing axis",
))  # fmt: skip


def _nodes(op, xs):
    xs = list(xs)
    if not xs:
        error(ShapeError, op, "needs at least one input")
    from graphc.ops.elementwise import coerce

    return coerce(op, *xs)


def concat(xs, axis: int = 0):
    """Join nodes along an existing axis (dtypes are promoted to a common one)."""
    xs = _nodes("concat", xs)
    ax = checked_axis("concat", axis, xs[0], what="first input")
    return xs[0] if len(xs) == 1 else apply("concat", xs, {"axis": ax})


def split(x, sections_or_sizes, axis: int = 0) -> list:
    """Split x along axis into n equal parts (an int) or parts of the given sizes (a list)."""
    ax = checked_axis("split", axis, x)
    dim = x.shape[ax]
    if not isinstance(dim, int):
        error(ShapeError, "split", f"cannot split symbolic dimension {dim!r} (axis {ax} of {x.type_str})")
    if _is_int(sections_or_sizes):
        n = int(sections_or_sizes)
        if n <= 0 or dim % n:
            error(AttributeValueError, "split", f"axis {ax} of {x.type_str} (size {dim}) does not split "
                                                f"into {n} equal sections")  # fmt: skip
        sizes = [dim // n] * n
    else:
        sizes = list(sections_or_sizes)
        if not all(_is_int(s) and s >= 0 for s in sizes) or builtins.sum(sizes) != dim:
            error(AttributeValueError, "split", f"sizes {sizes} must be non-negative ints summing to "
                                                f"{dim} (axis {ax} of {x.type_str})")  # fmt: skip
    from graphc.ops.tuple_ops import outputs

    return outputs(apply("split", [x], {"axis": ax, "sizes": tuple(sizes)}))


def _infer_split(inputs, attrs):
    (x,) = inputs
    ax, sizes = attrs["axis"], attrs["sizes"]
    if not 0 <= ax < x.ndim or builtins.sum(sizes) != x.shape[ax]:
        raise ShapeError(f"sizes {list(sizes)} do not split axis {ax}")
    return TupleType([((*x.shape[:ax], s, *x.shape[ax + 1 :]), x.dtype) for s in sizes])


def _ref_split(n, args, ctx):
    ax, sizes = n.attrs["axis"], n.attrs["sizes"]
    return tuple(np.split(args[0], np.cumsum(sizes)[:-1], axis=ax))


def _vjp_split(n, g, needs):
    """The output cotangents joined again (zeros where an output has none)."""
    from graphc.ops.tuple_ops import tuple_get

    parts = [c if c is not None else F.zeros_like(tuple_get(n, i)) for i, c in enumerate(g)]
    return [parts[0] if len(parts) == 1 else apply("concat", parts, {"axis": n.attrs["axis"]})]


register(OpDef(
    "split", Kind.OPAQUE, _infer_split, _ref_split, _vjp_split, rows=same_rows(),
    doc="parts of an input along an axis: one node with an output per part (read with tuple_get)",
))  # fmt: skip


def stack(xs, axis: int = 0):
    """Join nodes of one shape along a new axis."""
    xs = _nodes("stack", xs)
    ax = checked_axis("stack", axis, xs[0], rank=xs[0].ndim + 1, what="first input")
    for x in xs:
        if x.shape != xs[0].shape:
            error(ShapeError, "stack", f"inputs must have one shape, got {xs[0].type_str} and {x.type_str}")
    return concat([F.expand_dims(x, ax) for x in xs], ax)


# -- take / gather and its scatter-add ------------------------------------------------------
def _check_indices(n, idx, dim, what="index", allow_negative=True):
    """Raise IndexRangeError naming the op (or its `caller`), the bad value and the declaration line."""
    lo = -dim if allow_negative and n.attrs.get("negative", True) else 0
    bad = (idx < lo) | (idx >= dim)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        value = int(idx[pos])
        raise IndexRangeError(
            f"{n.attrs.get('caller', n.op)}: {what} {value} at position {pos} is out of range [{lo}, {dim}) for axis "
            f"{n.attrs['axis']} of size {dim}" + where(n.location)
        )


def _infer_take(inputs, attrs):
    x, idx = inputs
    if not dtypes.is_int(idx.dtype):
        raise DTypeError(f"indices must be int32 or int64, got {idx.dtype}")
    ax = attrs["axis"]
    if not 0 <= ax < x.ndim:
        raise ShapeError(f"axis {ax} is out of range for rank {x.ndim}")
    return (*x.shape[:ax], *idx.shape, *x.shape[ax + 1 :]), x.dtype


def _infer_take_grad(inputs, attrs):
    g, idx = inputs
    shape, ax = attrs["shape"], attrs["axis"]
    want = (*shape[:ax], *idx.shape, *shape[ax + 1 :])
    if g.shape != want:
        raise ShapeError(f"gradient {shapes.fmt(g.shape)} does not match take's output {shapes.fmt(want)}")
    return shape, g.dtype


def _ref_take(n, a, c):
    x, idx = a
    ax = n.attrs["axis"]
    _check_indices(n, idx, x.shape[ax])
    return np.take(x, idx, axis=ax)


def _ref_take_grad(n, a, c):
    g, idx = a
    ax = n.attrs["axis"]
    out = np.zeros(c.concrete(n.shape), n.dtype)
    _check_indices(n, idx, out.shape[ax])
    np.add.at(out, (_pyslice(None),) * ax + (idx,), g)  # repeated indices accumulate
    return out


register(OpDef(
    "take", Kind.INJECTIVE, _infer_take, _ref_take,
    lambda n, g, needs: [_take_grad(g, n.inputs[1], n.attrs["axis"], n.inputs[0].shape), None],
    doc="x's slices at integer indices along axis (embedding lookup); negative indices count from the end",
))  # fmt: skip
register(OpDef(
    "take_grad", Kind.OPAQUE, _infer_take_grad, _ref_take_grad,
    lambda n, g, needs: [take(g, n.inputs[1], n.attrs["axis"]), None],
    doc="scatter-add of g into zeros of `shape` at the indices (the VJP of take)",
))  # fmt: skip


def _take_grad(g, indices, axis, shape):
    return apply("take_grad", [g, indices], {"axis": axis, "shape": tuple(shape)})


def take(x, indices, axis: int = 0, negative: bool = True, caller: str | None = None):
    """x's entries at `indices` (int32/int64, any shape) along axis; like np.take.

    Indices outside [-size, size) (with negative=False: [0, size)) raise an error naming the op
    (or `caller`, e.g. the layer that made this take) and the index when run.
    """
    if not isinstance(indices, Node):
        arr = np.asarray(indices)
        if arr.dtype.kind not in "iu":
            error(DTypeError, "take", f"indices must be ints, got {indices!r}")
        indices = constant(arr, "int64", graph=x.graph)
    ax = checked_axis("take", axis, x)
    extra = {} if negative else {"negative": False}  # attrs only when set: old graphs keep their hash
    return apply("take", [x, indices], {"axis": ax, **extra, **({"caller": caller} if caller else {})})


gather = take


# -- one_hot --------------------------------------------------------------------------------
def _infer_one_hot(inputs, attrs):
    labels = inputs[0]
    if not dtypes.is_int(labels.dtype):
        raise DTypeError(f"labels must be int32 or int64, got {labels.dtype}")
    ax = attrs["axis"]
    if not 0 <= ax <= labels.ndim:
        raise ShapeError(f"axis {ax} is out of range for an output of rank {labels.ndim + 1}")
    return (*labels.shape[:ax], attrs["depth"], *labels.shape[ax:]), attrs["dtype"]


def _ref_one_hot(n, a, c):
    labels = a[0]
    depth, ax = n.attrs["depth"], n.attrs["axis"]
    bad = (labels < 0) | (labels >= depth)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        op = n.attrs.get("caller", "one_hot")  # the op the user declared, when a gradient rule made this one
        raise IndexRangeError(
            f"{op}: label {int(labels[pos])} at position {pos} is out of range [0, {depth})" + where(n.location)
        )
    classes = np.arange(depth).reshape((depth,) + (1,) * (labels.ndim - ax))
    return (np.expand_dims(labels, ax) == classes).astype(n.dtype)


register(OpDef("one_hot", Kind.INJECTIVE, _infer_one_hot, _ref_one_hot, None,
               doc="1 where the class equals the label, else 0 (not differentiable)"))  # fmt: skip


def one_hot(labels, depth: int, dtype: str = "float32", axis: int = -1):
    """One-hot encoding of integer labels; the class axis goes at `axis` (default last).

    Labels outside [0, depth) raise an error when run.
    """
    if not _is_int(depth) or depth <= 0:
        error(AttributeValueError, "one_hot", f"depth must be a positive int, got {depth!r}")
    labels = as_node(labels, dtype="int64") if not isinstance(labels, Node) else labels
    ax = checked_axis("one_hot", axis, labels, rank=labels.ndim + 1, what="labels")
    return apply("one_hot", [labels], {"depth": int(depth), "dtype": dtypes.canonical(dtype), "axis": ax})


# -- pad ------------------------------------------------------------------------------------
def _infer_pad(inputs, attrs):
    x, pads = inputs[0], attrs["pads"]
    if len(pads) != x.ndim:
        raise ShapeError(f"pads has {len(pads)} entries for rank {x.ndim}")
    out = []
    for axis, ((lo, hi), d) in enumerate(zip(pads, x.shape)):
        if lo < 0 or hi < 0:
            raise ShapeError(f"negative padding ({lo}, {hi}) on axis {axis}")
        if not isinstance(d, int) and (lo or hi):
            raise ShapeError(f"cannot pad symbolic dimension {d!r} (axis {axis})")
        out.append(d + lo + hi if isinstance(d, int) else d)
    return tuple(out), x.dtype


def _vjp_pad(n, g, needs):
    x = n.inputs[0]
    index = [None if not (lo or hi) else (lo, lo + d, 1) for (lo, hi), d in zip(n.attrs["pads"], x.shape)]
    return [_apply_slice(g, index)]


register(OpDef(
    "pad", Kind.INJECTIVE, _infer_pad,
    lambda n, a, c: np.pad(a[0], n.attrs["pads"], constant_values=n.attrs["value"]), _vjp_pad,
    doc="constant padding: pads[axis] = (before, after)",
))  # fmt: skip


def pad(x, pads, value: float = 0.0):
    """Pad x with a constant: pads is an int (every side of every axis), one (before, after)
    pair for all axes, or one pair per axis."""
    if _is_int(pads):
        pads = [(pads, pads)] * x.ndim
    elif len(pads) == 2 and all(_is_int(p) for p in pads):
        pads = [tuple(pads)] * x.ndim
    try:
        ok = all(len(pair) == 2 and all(_is_int(v) for v in pair) for pair in pads)
    except TypeError:
        ok = False
    if not ok:
        error(AttributeValueError, "pad", f"pads must be (before, after) int pairs, got {pads!r}")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        error(AttributeValueError, "pad", f"value must be a finite number, got {value!r}")
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if all(p == (0, 0) for p in pads) and len(pads) == x.ndim:
        return x
    return apply("pad", [x], {"pads": pads, "value": float(value)})
