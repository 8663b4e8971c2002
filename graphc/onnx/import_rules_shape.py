"""Import rules: ONNX's shape, layout and indexing ops, and the constants shape computations fold to.

Where an opset moved an attribute to an input (Reshape's shape, Squeeze/Unsqueeze's axes,
Slice's bounds, Split's sizes, Pad's pads), each form has its rule from the opset it appeared in.
"""

import math

import numpy as np

from graphc.ir import shapes
from graphc.onnx.importer_registry import onnx_op
from graphc.ops import api as F

INT_MAX = 2**63 - 1


def _axis(n, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        n.unsupported(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# -- reshape and friends ----------------------------------------------------------------------------
def _reshape(n, x, target, allowzero=0):
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= x.ndim:
                n.unsupported(f"shape {tuple(target)} copies dimension {i} (a 0) that input {x.type_str} lacks")
            out.append(x.shape[i])
        else:
            out.append(d)
    return F.reshape(x, tuple(out))


@onnx_op("Reshape", since=1, attrs={"shape", "consumed_inputs"})
def _reshape_attr(n):
    return _reshape(n, n.input(0), n.attr("shape", ()))


@onnx_op("Reshape", since=5, attrs={"allowzero"})
def _reshape_input(n):
    return _reshape(n, n.input(0), n.dims(1, "shape"), n.attr("allowzero", 0))


@onnx_op("Flatten", since=1, attrs={"axis"})
def _flatten(n):
    x = n.input(0)
    axis = n.attr("axis", 1)
    if not -x.ndim <= axis <= x.ndim:
        n.unsupported(f"axis {axis} is out of range for {x.type_str}")
    axis = axis + x.ndim if axis < 0 else axis
    head, tail = x.shape[:axis], x.shape[axis:]
    if shapes.is_concrete(tail):
        return F.reshape(x, (-1 if head else 1, math.prod(tail)))
    if shapes.is_concrete(head):
        return F.reshape(x, (math.prod(head), -1))
    n.unsupported(f"axis {axis} of {x.type_str}: both sides hold symbolic dimensions")


@onnx_op("Transpose", since=1, attrs={"perm"})
def _transpose(n):
    perm = n.attr("perm")
    return F.transpose(n.input(0), None if perm is None else tuple(perm))


def _squeeze(n, axes):
    x = n.input(0)
    if axes is None:
        return F.squeeze(x)
    return F.squeeze(x, tuple(_axis(n, a, x.ndim) for a in axes))


@onnx_op("Squeeze", since=1, attrs={"axes"})
def _squeeze_attr(n):
    return _squeeze(n, n.attr("axes"))


@onnx_op("Squeeze", since=13)
def _squeeze_input(n):
    return _squeeze(n, n.ints(1, "axes") if n.has(1) else None)


def _unsqueeze(n, axes):
    x = n.input(0)
    rank = x.ndim + len(axes)
    norm = sorted(_axis(n, a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        n.unsupported(f"axes {tuple(axes)} repeat an axis")
    dims = list(x.shape)
    for a in norm:
        dims.insert(a, 1)
    return F.reshape(x, tuple(dims))


@onnx_op("Unsqueeze", since=1, attrs={"axes"})
def _unsqueeze_attr(n):
    return _unsqueeze(n, n.attr("axes", ()))


@onnx_op("Unsqueeze", since=13)
def _unsqueeze_input(n):
    return _unsqueeze(n, n.ints(1, "axes"))


@onnx_op("Expand", since=8)
def _expand(n):
    x = n.input(0)
    return F.broadcast_to(x, shapes.broadcast(x.shape, n.dims(1, "shape")))


@onnx_op("Tile", since=6)
def _tile(n):
    x, reps = n.input(0), n.ints(1, "repeats")
    if len(reps) != x.ndim or not shapes.is_concrete(x.shape):
        n.unsupported(f"repeats {reps} for input {x.type_str} (graphc tiles concrete shapes, one repeat per axis)")
    grown = F.reshape(x, tuple(d for dim in x.shape for d in (1, dim)))
    grown = F.broadcast_to(grown, tuple(d for r, dim in zip(reps, x.shape) for d in (r, dim)))
    return F.reshape(grown, tuple(r * d for r, d in zip(reps, x.shape)))


@onnx_op("DepthToSpace", since=1, attrs={"blocksize", "mode"})
def _depth_to_space(n):
    x, b, mode = n.input(0), n.attr("blocksize"), n.attr("mode", "DCR")
    N, C, H, W = x.shape
    if mode == "DCR":
        y = F.transpose(F.reshape(x, (N, b, b, C // (b * b), H, W)), (0, 3, 4, 1, 5, 2))
    else:
        y = F.transpose(F.reshape(x, (N, C // (b * b), b, b, H, W)), (0, 1, 4, 2, 5, 3))
    return F.reshape(y, (N, C // (b * b), H * b, W * b))


@onnx_op("SpaceToDepth", since=1, attrs={"blocksize", "mode"})
def _space_to_depth(n):
    x, b = n.input(0), n.attr("blocksize")
    N, C, H, W = x.shape
    perm = (0, 3, 5, 1, 2, 4) if n.attr("mode", "DCR") == "DCR" else (0, 1, 3, 5, 2, 4)
    y = F.transpose(F.reshape(x, (N, C, H // b, b, W // b, b)), perm)
    return F.reshape(y, (N, C * b * b, H // b, W // b))


# -- joining and cutting ----------------------------------------------------------------------------
@onnx_op("Concat", since=4, attrs={"axis"})
def _concat(n):
    xs = n.inputs()
    return F.concat(xs, _axis(n, n.attr("axis"), xs[0].ndim))


def _split(n, sizes):
    x = n.input(0)
    axis = _axis(n, n.attr("axis", 0), x.ndim)
    dim = x.shape[axis]
    if not isinstance(dim, int):
        n.unsupported(f"axis {axis} of {x.type_str} is symbolic")
    if sizes is None:
        parts = n.attr("num_outputs", n.num_outputs)
        chunk = -(-dim // parts)
        sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
        if n.opset < 18 and dim % parts:
            n.unsupported(f"axis {axis} (size {dim}) does not split into {parts} equal parts")
    return F.split(x, list(sizes), axis)


@onnx_op("Split", since=2, attrs={"axis", "split"})
def _split_attr(n):
    return _split(n, n.attr("split"))


@onnx_op("Split", since=13, attrs={"axis", "num_outputs"})
def _split_input(n):
    return _split(n, n.ints(1, "split") if n.has(1) else None)


def _slice(n, starts, ends, axes, steps):
    x = n.input(0)
    axes = tuple(range(len(starts))) if axes is None else tuple(_axis(n, a, x.ndim) for a in axes)
    steps = (1,) * len(starts) if steps is None else steps
    if any(s == 0 for s in steps):
        n.unsupported(f"steps {steps} hold a 0")
    clip = [(max(min(b, INT_MAX), -INT_MAX), max(min(e, INT_MAX), -INT_MAX)) for b, e in zip(starts, ends)]
    return F.slice(x, [b for b, _ in clip], [e for _, e in clip], list(steps), axes=list(axes))


@onnx_op("Slice", since=1, attrs={"starts", "ends", "axes"})
def _slice_attr(n):
    return _slice(n, n.attr("starts"), n.attr("ends"), n.attr("axes"), None)


@onnx_op("Slice", since=10)
def _slice_input(n):
    axes = n.ints(3, "axes") if n.has(3) else None
    steps = n.ints(4, "steps") if n.has(4) else None
    return _slice(n, n.ints(1, "starts"), n.ints(2, "ends"), axes, steps)


@onnx_op("Gather", since=1, attrs={"axis"})
def _gather(n):
    x = n.input(0)
    return F.take(x, n.input(1), _axis(n, n.attr("axis", 0), x.ndim))


def _pad_axis(n, x, axis, lo, hi, mode, value):
    dim = x.shape[axis]
    if lo < 0 or hi < 0:  # negative pads crop
        x = F.slice(x, [max(-lo, 0)], [dim - max(-hi, 0)], axes=[axis])
        lo, hi, dim = max(lo, 0), max(hi, 0), x.shape[axis]
    if not (lo or hi):
        return x
    if mode == "constant":
        pads = [(0, 0)] * x.ndim
        pads[axis] = (lo, hi)
        return F.pad(x, pads, value)
    parts = []
    if mode == "reflect":
        if lo >= dim or hi >= dim:
            n.unsupported(f"reflect padding ({lo}, {hi}) is not smaller than axis {axis} (size {dim})")
        left = F.slice(x, [lo], [0], [-1], axes=[axis]) if lo else None
        stop = dim - 2 - hi if dim - 2 - hi >= 0 else -dim - 1  # down to index 0 included
        right = F.slice(x, [dim - 2], [stop], [-1], axes=[axis]) if hi else None
    elif mode == "edge":
        first, last = F.slice(x, [0], [1], axes=[axis]), F.slice(x, [dim - 1], [dim], axes=[axis])
        left = F.concat([first] * lo, axis) if lo else None
        right = F.concat([last] * hi, axis) if hi else None
    elif mode == "wrap":
        if lo > dim or hi > dim:
            n.unsupported(f"wrap padding ({lo}, {hi}) is larger than axis {axis} (size {dim})")
        left = F.slice(x, [dim - lo], [dim], axes=[axis]) if lo else None
        right = F.slice(x, [0], [hi], axes=[axis]) if hi else None
    else:
        n.unsupported(f"mode={mode!r} (graphc pads in modes constant, reflect, edge and wrap)")
    parts = [p for p in (left, x, right) if p is not None]
    return F.concat(parts, axis)


def _pad(n, pads, mode, value, axes=None):
    x = n.input(0)
    axes = tuple(range(x.ndim)) if axes is None else tuple(_axis(n, a, x.ndim) for a in axes)
    if len(pads) != 2 * len(axes):
        n.unsupported(f"pads {pads} has {len(pads)} entries for {len(axes)} axes")
    for k, axis in enumerate(axes):
        x = _pad_axis(n, x, axis, pads[k], pads[k + len(axes)], mode, value)
    return x


@onnx_op("Pad", since=2, attrs={"pads", "mode", "value"})
def _pad_attr(n):
    return _pad(n, n.attr("pads"), n.attr("mode", "constant"), n.attr("value", 0.0))


@onnx_op("Pad", since=11, attrs={"mode"})
def _pad_input(n):
    value = 0.0
    if n.has(2):
        v = n.numbers(2, "constant_value").reshape(-1)
        value = v[0].item() if v.size else 0.0
        if isinstance(value, bool):
            value = int(value)
    axes = n.ints(3, "axes") if n.has(3) else None
    return _pad(n, n.ints(1, "pads"), n.attr("mode", "constant"), value, axes)


# -- constants and shapes ---------------------------------------------------------------------------
def _shape_value(dims) -> np.ndarray:
    if shapes.is_concrete(dims):
        return np.asarray(dims, np.int64).reshape(len(dims))
    out = np.empty(len(dims), object)
    out[:] = list(dims)
    return out


@onnx_op("Shape", since=1, attrs={"start", "end"})
def _shape(n):
    dims = n.input(0).shape
    start, end = n.attr("start", 0), n.attr("end", None)
    return _shape_value(dims[slice(start, end)])


@onnx_op("Size", since=1)
def _size(n):
    x = n.input(0)
    if not shapes.is_concrete(x.shape):
        n.unsupported(f"the size of {x.type_str} is not known at import")
    return np.asarray(math.prod(x.shape), np.int64)


@onnx_op("ConstantOfShape", since=9, attrs={"value"})
def _constant_of_shape(n):
    value = n.attr("value")
    value = np.zeros(1, np.float32) if value is None else value
    dims = n.dims(0, "input")
    if shapes.is_concrete(dims):
        return np.full(dims, value.reshape(-1)[0], value.dtype)
    # a shape with symbolic dims (Shape of an input): the value broadcast to it, sized when the graph runs
    return F.broadcast_to(F.constant(value.reshape(()), value.dtype.name), dims)


_CONSTANT_ATTRS = {"value", "value_float", "value_floats", "value_int", "value_ints", "sparse_value"}


@onnx_op("Constant", since=1, attrs=_CONSTANT_ATTRS | {"value_string", "value_strings"})
def _constant(n):
    if n.has_attr("value_string") or n.has_attr("value_strings"):
        n.unsupported("a string constant (graphc has no string dtype)")
    if n.has_attr("value"):
        return n.attr("value")
    for name, dtype in (("value_float", np.float32), ("value_floats", np.float32)):
        if n.has_attr(name):
            return np.asarray(n.attr(name), dtype)
    for name in ("value_int", "value_ints"):
        if n.has_attr(name):
            return np.asarray(n.attr(name), np.int64)
    n.unsupported("no value attribute")


@onnx_op("Range", since=11)
def _range(n):
    start, limit, delta = (n.numbers(i, what).reshape(()) for i, what in enumerate(("start", "limit", "delta")))
    count = max(int(np.ceil((limit - start) / delta)), 0)
    return (start + np.arange(count) * delta).astype(start.dtype)


@onnx_op("GatherElements", since=11, attrs={"axis"})
def _gather_elements(n):
    """x's entries at idx along axis: the one-hot of idx (a new axis after `axis`) times x, summed."""
    x, idx = n.input(0), n.input(1)
    axis = n.attr("axis", 0) % x.ndim
    dim = x.shape[axis]
    if not isinstance(dim, int):
        n.unsupported(f"axis {axis} of {x.type_str} is symbolic")
    idx = F.where(F.less(idx, 0), idx + dim, idx)
    picked = F.one_hot(idx, dim, "bool", axis + 1)
    return F.sum(F.where(picked, F.expand_dims(x, axis), F.zeros_like(F.expand_dims(x, axis))), axis + 1)


@onnx_op("OneHot", since=9, attrs={"axis"})
def _one_hot(n):
    """Indices in [-depth, depth) pick their class (negative ones count from the end); others give all-off rows."""
    indices, depth = n.input(0), int(n.numbers(1, "depth").reshape(-1)[0])
    values = n.input(2)
    if indices.dtype not in ("int32", "int64"):
        indices = F.cast(indices, "int64")
    indices = F.where(F.less(indices, 0), indices + depth, indices)
    inside = F.greater_equal(indices, 0)
    valid = F.where(inside, F.less(indices, depth), inside)
    axis = n.attr("axis", -1)
    hot = F.one_hot(F.where(valid, indices, 0), depth, values.dtype, axis)
    axis = axis % hot.ndim
    hot = hot * F.expand_dims(F.cast(valid, values.dtype), axis)
    off, on = F.take(values, [0]), F.take(values, [1])
    return hot * F.reshape(on - off, ()) + F.reshape(off, ())


# -- shape arithmetic without a graphc op: computed at import, on values known then ------------------
def _known(n, i):
    value = n.known(i)
    if value is None:
        n.unsupported(
            f"{n.op_type} of a value computed at run time (graphc has no {n.op_type} op; it computes {n.op_type} "
            f"at import, on values known then, as shape computations need)"
        )
    return n.numbers(i, "input")


def _folded(op_type, fn, since=1, attrs=()):
    onnx_op(op_type, since=since, attrs=attrs, folds_only=True)(fn)


_folded("Floor", lambda n: np.floor(_known(n, 0)), since=6)
_folded("Ceil", lambda n: np.ceil(_known(n, 0)), since=6)
_folded("Round", lambda n: np.round(_known(n, 0)), since=11)
_folded(
    "Mod",
    lambda n: (np.fmod if n.attr("fmod", 0) else np.mod)(_known(n, 0), _known(n, 1)).astype(_known(n, 0).dtype),
    since=10,
    attrs={"fmod"},
)


def _reduce_prod(n):
    x = _known(n, 0)
    axes = n.attr("axes") if n.opset < 18 else (n.ints(1, "axes") if n.has(1) else None)
    if not axes:
        if n.attr("noop_with_empty_axes", 0):
            return x
        axes = tuple(range(x.ndim))
    return np.prod(x, axis=tuple(axes), keepdims=bool(n.attr("keepdims", 1))).astype(x.dtype)


_folded("ReduceProd", _reduce_prod, attrs={"axes", "keepdims", "noop_with_empty_axes"})
