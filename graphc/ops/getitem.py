"""x[index] on graph nodes: NumPy basic indexing built from slice, reshape, take and transpose."""

import builtins
import operator

import numpy as np

from graphc.errors import DTypeError, IndexRangeError, ShapeError
from graphc.ir import dtypes
from graphc.ir.node import Node
from graphc.ops.indexing import _apply_slice, _is_int, _norm_slice, take
from graphc.ops.registry import F, constant, error

__all__ = ["getitem"]

_pyslice = builtins.slice


def getitem(x, index):
    """NumPy basic indexing on a node (x[1:, ::2, None, ..., -1]) plus one integer-array index.

    An integer node (or int list/array) indexes one axis like `take`; boolean masks are
    refused because their result's shape depends on the data.
    """
    items = list(index) if isinstance(index, tuple) else [index]
    for k, it in enumerate(items):
        if isinstance(it, list | np.ndarray):
            arr = np.asarray(it)
            if arr.dtype.kind not in "iub":
                error(DTypeError, "getitem", f"index array must hold ints, got dtype {arr.dtype}")
            items[k] = it = arr if arr.dtype.kind == "b" else constant(arr, "int64", graph=x.graph)
        if isinstance(it, bool | np.bool_) or getattr(it, "dtype", None) in ("bool", np.bool_):
            msg = "is not supported: its result's shape depends on the data; use gc.where instead"
            error(IndexRangeError, "getitem", f"boolean-mask indexing of {x.type_str} {msg}")
        if isinstance(it, Node) and not dtypes.is_int(it.dtype):
            error(DTypeError, "getitem", f"an index node must be int32 or int64, got {it.type_str}")
        if not (it is None or it is Ellipsis or isinstance(it, _pyslice | Node) or _is_int(it)):
            error(IndexRangeError, "getitem", f"unsupported index {it!r} of type {type(it).__name__}")
    if sum(it is Ellipsis for it in items) > 1:
        error(IndexRangeError, "getitem", "an index can only have a single ellipsis ('...')")
    used = sum(it is not None and it is not Ellipsis for it in items)
    if used > x.ndim:
        error(IndexRangeError, "getitem", f"too many indices ({used}) for {x.type_str}")
    fill = [_pyslice(None)] * (x.ndim - used)
    if any(it is Ellipsis for it in items):
        k = next(i for i, it in enumerate(items) if it is Ellipsis)
        items[k : k + 1] = fill
    else:
        items += fill
    nodes = [it for it in items if isinstance(it, Node)]
    if len(nodes) > 1:
        error(IndexRangeError, "getitem", "only one integer-array index is supported; index in two steps")

    entries, out_dims, axis, take_axis, lead = [], [], 0, None, 0
    for it in items:
        if it is None:
            out_dims.append(("new",))
            continue
        dim = x.shape[axis]
        if isinstance(it, Node):
            entries.append(None)
            out_dims.append(("take",))
            take_axis = axis
        elif isinstance(it, _pyslice):
            entries.append(_norm_slice("getitem", it, dim, axis, x))
            out_dims.append(("keep", axis))
        else:
            i = operator.index(it)
            if not isinstance(dim, int):
                error(
                    ShapeError,
                    "getitem",
                    f"cannot index symbolic dimension {dim!r} (axis {axis} of {x.type_str}) with the integer {i}",
                )
            if not -dim <= i < dim:
                error(
                    IndexRangeError,
                    "getitem",
                    f"index {i} is out of range for axis {axis} of size {dim} ({x.type_str})",
                )
            i %= dim
            entries.append((i, i + 1, 1))
            out_dims.append(("drop",))
        axis += 1
    y = _apply_slice(x, entries)
    final = []
    for kind in out_dims:
        if kind[0] == "new":
            final.append(1)
        elif kind[0] == "keep":
            final.append(y.shape[kind[1]])
        elif kind[0] == "take":
            lead = len(final)
            final.extend(nodes[0].shape)
    if nodes:
        y = take(y, nodes[0], take_axis)
    final = tuple(final)
    y = F.reshape(y, final) if y.shape != final else y
    # NumPy puts the array index's dims first when ints and the array are not adjacent.
    adv = [k for k, it in enumerate(items) if isinstance(it, Node) or _is_int(it)]
    if nodes and adv[-1] - adv[0] + 1 != len(adv) and lead:  # lead: output dims before the array's
        m = nodes[0].ndim
        perm = (*range(lead, lead + m), *range(lead), *range(lead + m, len(final)))
        y = F.transpose(y, perm)
    return y
