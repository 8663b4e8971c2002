"""Dead-code elimination, common-subexpression elimination and constant folding."""

import numpy as np

from graphc.ir import shapes
from graphc.ir.graph import Graph
from graphc.ops.context import RunContext
from graphc.ops.registry import Kind, const_value
from graphc.passes.rewrite import is_variable, rewrite

# Folding materialises results: beyond this many elements a constant costs more memory (and
# defeats broadcasting in fused loops) than recomputing it does.
FOLD_MAX_ELEMENTS = 4096


def dce(graph: Graph) -> Graph:
    """Dead-code elimination: keep only what outputs and updates need (and every input/param)."""
    live = {n.id for n in graph.live_nodes()}
    keep = [n for n in graph.nodes if n.id in live or is_variable(graph, n)]
    return rewrite(graph, None, keep)


def cse(graph: Graph) -> Graph:
    """Common-subexpression elimination: one node per (op, inputs, attributes); impure ops never merge."""
    seen: dict = {}

    def rule(rw, node, inputs):
        if not node.opdef.pure:
            return None
        ids = tuple(x.id for x in inputs)
        if node.opdef.commutative:  # a+b and b+a are one value
            ids = tuple(sorted(ids))
        key = (node.op, ids, node.attrs.key(), node.types)
        if key in seen:
            return seen[key]
        seen[key] = rw.copy(node, inputs)
        return seen[key]

    return rewrite(graph, rule)


class _FoldContext(RunContext):
    def __init__(self):
        super().__init__({}, {}, {}, 0)


def fold(graph: Graph) -> Graph:
    """Constant folding: evaluate nodes whose inputs are all constants, with the op's NumPy reference.

    Skips impure ops (random, collective), symbolic shapes, results over FOLD_MAX_ELEMENTS elements, and any result
    that is not finite (a rewrite must never be where a NaN or inf first appears).
    """
    ctx = _FoldContext()

    def rule(rw, node, inputs):
        opdef = node.opdef
        if not inputs or opdef.kind is Kind.SOURCE or not opdef.pure:
            return None
        args = [const_value(x) for x in inputs]
        if node.is_tuple or any(a is None for a in args) or not shapes.is_concrete(node.shape):
            return None
        n = shapes.numel(node.shape)
        if n > FOLD_MAX_ELEMENTS:
            return None
        try:
            with np.errstate(all="ignore"):
                out = np.asarray(opdef.ref(node, args, ctx))
        except Exception:  # a reference that cannot run on these constants is left to run time
            return None
        if out.shape != tuple(node.shape):
            return None
        out = out.astype(node.dtype, copy=False)
        if out.dtype.kind == "f" and not np.all(np.isfinite(out)):
            return None
        return rw.const(out, node.dtype)

    return rewrite(graph, rule)
