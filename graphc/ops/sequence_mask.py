"""sequence_mask: which steps of a padded batch are real, from the sequences' lengths.

`sequence_mask(lengths, maxlen)` is True at [..., t] where t < lengths[...]: the mask of the
valid steps of sequences padded to `maxlen` steps (tf.sequence_mask). The op checks the
lengths when it runs, on every backend (its NumPy reference is its only implementation): a
length that is negative or longer than `maxlen` raises IndexRangeError naming the caller (the
layer or loss that made the mask), the values and their positions.
"""

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, IndexRangeError, where
from graphc.ir import dtypes
from graphc.ir.node import Node
from graphc.ops.registry import Kind, OpDef, apply, error, register

__all__ = ["sequence_mask"]


def _infer(inputs, attrs):
    (lengths,) = inputs
    if not dtypes.is_int(lengths.dtype):
        raise DTypeError(f"lengths must be int32 or int64, got {lengths.dtype}")
    return (*lengths.shape, attrs["maxlen"]), attrs["dtype"]


def _ref(n, args, ctx):
    (lengths,) = args
    (maxlen,) = ctx.concrete((n.attrs["maxlen"],))
    bad = (lengths < 0) | (lengths > maxlen)
    if bad.any():
        at = np.argwhere(bad)[:5]
        values = ", ".join(f"{int(lengths[tuple(p)])} at {tuple(int(i) for i in p)}" for p in at)
        more = f" (and {int(bad.sum()) - len(at)} more)" if bad.sum() > len(at) else ""
        caller = n.attrs["caller"] or "sequence_mask"
        raise IndexRangeError(
            f"{caller}: sequence lengths must lie in [0, {maxlen}] (the time axis has {maxlen} steps), "
            f"got {values}{more}" + where(n.location)
        )
    return (np.arange(maxlen) < lengths[..., None]).astype(n.dtype)


register(
    OpDef(
        "sequence_mask",
        Kind.OPAQUE,
        _infer,
        _ref,
        None,
        doc="True where the step index is below the length (lengths checked in [0, maxlen] at run time)",
    )
)


def sequence_mask(lengths, maxlen, dtype: str = "bool", caller: str | None = None):
    """mask[..., t] = t < lengths[...], for t in [0, maxlen): shape (*lengths.shape, maxlen).

    `lengths`: an int32/int64 node; `maxlen`: an int or a dimension name (the padded time
    axis, e.g. x.shape[1]). At run time a length outside [0, maxlen] raises IndexRangeError
    naming `caller` (default "sequence_mask") and the bad values.
    """
    if not isinstance(lengths, Node):
        error(DTypeError, "sequence_mask", f"lengths must be a graph node, got {type(lengths).__name__}")
    ok = isinstance(maxlen, str) or (isinstance(maxlen, int | np.integer) and not isinstance(maxlen, bool))
    if not ok or (not isinstance(maxlen, str) and maxlen < 0):
        error(
            AttributeValueError,
            "sequence_mask",
            f"maxlen must be a non-negative int or a dimension name, got {maxlen!r}",
        )
    if caller is not None and not isinstance(caller, str):
        error(AttributeValueError, "sequence_mask", f"caller must be a string or None, got {caller!r}")
    maxlen = maxlen if isinstance(maxlen, str) else int(maxlen)
    return apply("sequence_mask", [lengths], {"maxlen": maxlen, "dtype": dtypes.canonical(dtype), "caller": caller})
