"""Batched forms: an op applied to stacked values `[T, ...]` that computes every step's result of a
loop at once (the loop passes move work out of scans with them).

`x_t @ W` for every step is `xs @ W` (matmul broadcasts a batch axis), `tanh(x_t)` is
`tanh(xs)`, `transpose(x_t, perm)` is `transpose(xs, (0, *perm + 1))`. An input flagged
stacked has the time axis in front; the others are the same at every step.
"""

from graphc.errors import ShapeError
from graphc.ir.node import Node
from graphc.ops.registry import Kind
from graphc.passes.rewrite import Rewriter

__all__ = ["BATCH_RULES", "batched_form", "emit_batched"]


def _batched_matmul(node, stacked):
    a, b = node.inputs
    if stacked[0] and stacked[1]:
        ok = a.ndim == b.ndim  # the time axes meet, the step's batch axes broadcast as before
    else:
        ok = (b if stacked[0] else a).ndim == 2  # a loop-invariant matrix: no batch axes of its own
    return (node.op, node.attrs) if ok else None


def _batched_transpose(node, stacked):
    return node.op, {"perm": (0, *(p + 1 for p in node.attrs["perm"]))}


# op -> rule(node, stacked flags) -> (op, attrs) of the batched form, or None where there is none.
# Elementwise and broadcasting ops with a scalar template need no entry (batched_form covers them).
BATCH_RULES = {"matmul": _batched_matmul, "transpose": _batched_transpose}


def batched_form(node: Node, stacked) -> tuple | None:
    """(op, attrs) computing `node` for every step at once, its inputs flagged `stacked` given with
    a leading time axis (the others loop-invariant); None if it has no such form."""
    od = node.opdef
    if not od.pure or node.is_tuple or not any(stacked):
        return None
    if od.kind in (Kind.ELEMENTWISE, Kind.BROADCAST) and od.scalar is not None:
        # the time axis must lead every stacked operand and no invariant operand may reach it
        if all(x.ndim == node.ndim if s else x.ndim <= node.ndim for x, s in zip(node.inputs, stacked)):
            return node.op, node.attrs
        return None
    rule = BATCH_RULES.get(node.op)
    return rule(node, list(stacked)) if rule is not None else None


def emit_batched(rw: Rewriter, node: Node, form, args, length, like: Node) -> Node:
    """The batched `form` of `node` on `args`, in the new graph: a ShapeError (the rewriter then keeps
    the loop as it was) unless it is `[length, ...]` of node's type."""
    op, attrs = form
    out = rw.emit(op, args, attrs, like=like)
    if out.types != (((length, *node.shape), node.dtype),):
        raise ShapeError(f"batched {node.op} is {out.type_str}, not [{length}, ...] of {node.type_str}")
    return out
