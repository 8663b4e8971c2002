"""Algebraic simplification: a table of rewrite rules keyed by op (after tinygrad's pattern matcher).

Each rule looks at one node (old graph: op, attributes, type) and its rewritten inputs (new
graph) and returns a replacement or None. The rewriter only accepts a replacement with exactly
the node's shape and dtype, so `x + zeros(bigger)` keeps its broadcast.
"""

import numpy as np

from graphc.ir.graph import Graph
from graphc.ops.registry import const_value
from graphc.passes.rewrite import Rewriter, rewrite, table_rule


def is_const(node, value) -> bool:
    """True if `node` is a constant whose every element equals `value`, or that broadcast (a
    zero gradient term loop_accumulate leaves: a weight's per-step part, all zeros)."""
    while node.op == "broadcast_to":
        node = node.inputs[0]
    v = const_value(node)
    return v is not None and v.size > 0 and bool(np.all(v == value))


def known_nonnegative(node) -> bool:
    """Is every element of node >= 0 (so exp(log(y)) == y, 0 included)? From its OpDef's sign."""
    v = const_value(node)
    if v is not None:
        return bool(np.all(v >= 0))
    if node.op == "mul" and node.inputs[0] is node.inputs[1]:
        return True  # x * x
    return node.opdef.nonnegative


# -- the rules -------------------------------------------------------------------------------------
def _identity_operand(unit, sides=(0, 1)):
    """x op unit -> x (and unit op x -> x for sides including 0)."""

    def rule(rw, node, inputs):
        for i in sides:
            if is_const(inputs[1 - i], unit):
                return inputs[i]
        return None

    return rule


def _zero_minus(rw, node, inputs):
    if is_const(inputs[0], 0):
        return rw.emit("neg", [inputs[1]])
    return None


def _involution(rw, node, inputs):
    """f(f(x)) -> x for f its own inverse (--x)."""
    x = inputs[0]
    return x.inputs[0] if x.op == node.op else None


def _inverse_of(inner, guard=None):
    """outer(inner(x)) -> x, where the guard (if any) says x is in outer's domain."""

    def rule(rw, node, inputs):
        x = inputs[0]
        if x.op == inner and (guard is None or guard(x.inputs[0])):
            return x.inputs[0]
        return None

    return rule


def _transpose(rw, node, inputs):
    x, perm = inputs[0], node.attrs["perm"]
    if perm == tuple(range(len(perm))):
        return x
    if x.op != "transpose":
        return None
    inner = x.attrs["perm"]
    composed = tuple(inner[p] for p in perm)  # out[i] = x[perm[i]] = src[inner[perm[i]]]
    src = x.inputs[0]
    return src if composed == tuple(range(len(composed))) else rw.emit("transpose", [src], {"perm": composed})


def _reshape(rw, node, inputs):
    x = inputs[0]
    if x.shape == node.shape:
        return x
    if x.op != "reshape":
        return None
    src = x.inputs[0]
    return src if src.shape == node.shape else rw.emit("reshape", [src], {"shape": node.shape})


def _broadcast_to(rw, node, inputs):
    x = inputs[0]
    if x.shape == node.shape:
        return x
    if x.op == "broadcast_to":
        return rw.emit("broadcast_to", [x.inputs[0]], {"shape": node.shape})
    return None


# Casting through a wider type and back is exact: (from, via) pairs.
_EXACT_ROUNDTRIPS = {
    ("float32", "float64"),
    ("int32", "int64"),
    ("int32", "float64"),
    ("bool", "int32"),
    ("bool", "int64"),
    ("bool", "float32"),
    ("bool", "float64"),
}


def _cast(rw, node, inputs):
    x = inputs[0]
    if x.dtype == node.dtype:
        return x
    if x.op == "cast" and x.inputs[0].dtype == node.dtype and (node.dtype, x.dtype) in _EXACT_ROUNDTRIPS:
        return x.inputs[0]
    return None


def _pow(rw, node, inputs):
    x, e = inputs
    if is_const(e, 1):
        return x
    if is_const(e, 2):
        return rw.emit("mul", [x, x])
    return None


def _sum_of_batched_products(rw, node, inputs):
    """sum(matmul(transpose(A), B), axis=0) over a leading stacked axis T, A [T, N, F], B [T, N, H]
    (the weight gradient of every step of a loop, summed) -> one product over T*N rows:
    transpose(reshape(A, [T*N, F])) @ reshape(B, [T*N, H]). Needs T and N concrete. The
    transpose may be of another transpose, folded into it (`transpose(x, (1, 2, 0))` for A =
    `transpose(x, (1, 0, 2))`, a batch-first input made time-major): A is then that transpose,
    whose rows are copied once."""
    (p,) = inputs
    if node.attrs["axes"] != (0,) or node.attrs["keepdims"] or p.op != "matmul" or p.ndim != 3:
        return None
    a_t, b = p.inputs
    if a_t.op != "transpose" or b.ndim != 3:
        return None
    perm = a_t.attrs["perm"]
    src = a_t.inputs[0]
    # a_t = transpose(A, (0, 2, 1)) for A = transpose(src, q), q = perm with its last two swapped
    q = (perm[0], perm[2], perm[1])
    a = src if q == (0, 1, 2) else rw.emit("transpose", [src], {"perm": q})
    t, n = a.shape[:2]
    if not (isinstance(t, int) and isinstance(n, int)) or tuple(b.shape[:2]) != (t, n):
        return None
    rows_a = rw.emit("reshape", [a], {"shape": (t * n, a.shape[2])})
    rows_b = rw.emit("reshape", [b], {"shape": (t * n, b.shape[2])})
    return rw.emit("matmul", [rw.emit("transpose", [rows_a], {"perm": (1, 0)}), rows_b])


SIMPLIFY_RULES = {
    "mul": [_identity_operand(1)],
    "add": [_identity_operand(0)],
    "sub": [_identity_operand(0, sides=(0,)), _zero_minus],
    "div": [_identity_operand(1, sides=(0,))],
    "neg": [_involution],
    "log": [_inverse_of("exp")],
    "exp": [_inverse_of("log", guard=known_nonnegative)],
    "transpose": [_transpose],
    "reshape": [_reshape],
    "broadcast_to": [_broadcast_to],
    "cast": [_cast],
    "pow": [_pow],
    "sum": [_sum_of_batched_products],
}


def simplify(graph: Graph) -> Graph:
    """Algebraic simplification by the SIMPLIFY_RULES table (x*1, x+0, --x, log(exp x), sums of
    batched products, ...)."""
    return rewrite(graph, table_rule(SIMPLIFY_RULES))


__all__ = ["simplify", "SIMPLIFY_RULES", "is_const", "known_nonnegative", "Rewriter"]
