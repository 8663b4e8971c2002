"""Matrix products: batched, broadcasting matmul (output-fusable: bias and activation fuse in)."""

import numpy as np

from graphc.errors import DTypeError, ShapeError
from graphc.ir import dtypes, shapes
from graphc.ops.registry import F, Kind, OpDef, apply, error, register
from graphc.ops.rows import matmul_rows

__all__ = ["matmul", "dense_product"]


def _infer_matmul(inputs, attrs):
    a, b = inputs
    if a.dtype != b.dtype:
        raise DTypeError(f"dtypes differ: {a.dtype} and {b.dtype}")
    if not dtypes.is_float(a.dtype):
        raise DTypeError(f"needs float inputs, got {a.dtype}")
    if a.ndim < 2 or b.ndim < 2:
        raise ShapeError("operands need rank >= 2 (vectors are reshaped by matmul())")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"inner dimensions differ: {a.shape[-1]} (of {a.type_str}) vs {b.shape[-2]} (of {b.type_str})")
    batch = shapes.broadcast(a.shape[:-2], b.shape[:-2])
    return (*batch, a.shape[-2], b.shape[-1]), a.dtype


def _vjp_matmul(n, g, needs):
    a, b = n.inputs
    ga = F.sum_to(matmul(g, F.swapaxes(b)), a.shape) if needs[0] else None
    gb = F.sum_to(matmul(F.swapaxes(a), g), b.shape) if needs[1] else None
    return [ga, gb]


register(
    OpDef(
        "matmul",
        Kind.OUT_FUSABLE,
        _infer_matmul,
        lambda n, a, c: np.matmul(a[0], a[1]),
        _vjp_matmul,
        rows=matmul_rows,
        doc="matrix product over the last two axes, batch axes broadcast",
    )
)


def matmul(a, b):
    """a @ b with NumPy semantics: 1-D operands are promoted to matrices and squeezed back."""
    from graphc.ops.elementwise import coerce

    a, b = coerce("matmul", a, b)
    op = f"matmul({a.type_str}, {b.type_str})"  # the user's shapes, before 1-D operands are reshaped
    if a.ndim == 0 or b.ndim == 0:
        error(ShapeError, op, "operands must be at least 1-D")
    k_a, k_b = a.shape[-1], (b.shape[0] if b.ndim == 1 else b.shape[-2])
    if k_a != k_b:
        error(ShapeError, op, f"inner dimensions differ: {k_a} (of {a.type_str}) vs {k_b} (of {b.type_str})")
    squeeze = []
    if a.ndim == 1:
        a = F.reshape(a, (1, a.shape[0]))
        squeeze.append(-2)
    if b.ndim == 1:
        b = F.reshape(b, (b.shape[0], 1))
        squeeze.append(-1)
    out = apply("matmul", [a, b])
    if squeeze:
        shape = list(out.shape)
        for ax in sorted(squeeze):
            shape.pop(ax)
        out = F.reshape(out, tuple(shape))
    return out


def dense_product(x, w, b=None):
    """x @ w (+ b): the affine map of a dense layer."""
    y = matmul(x, w)
    return y if b is None else y + b
