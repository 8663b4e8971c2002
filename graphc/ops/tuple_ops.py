"""The projection op: tuple_get(t, index) reads output `index` of a node with several outputs.

Ops with several outputs (split, scan) make a graphc.ir.node.TupleNode, whose value is a tuple;
every other op reads one output through tuple_get (TVM's TupleGetItem, tinygrad's GETTUPLE).
Its gradient is the cotangent placed at its index of the tuple's cotangents (autodiff sums them
per output and hands the tuple op's rule one cotangent, or None, per output).
"""

import numpy as np

from graphc.errors import AttributeValueError, GraphStructureError, IndexRangeError
from graphc.ir.node import Node
from graphc.ops.registry import Kind, OpDef, apply, error, register
from graphc.ops.rows import tuple_rows

__all__ = ["tuple_get"]


def _infer_tuple_get(inputs, attrs):
    (t,) = inputs
    i = attrs["index"]
    if not t.is_tuple:
        raise AttributeValueError(f"input {t.label} has one output, not a tuple")
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(t.types):
        raise AttributeValueError(f"index {i!r} is out of range for {len(t.types)} outputs")
    return t.types[i]


def _vjp_tuple_get(n, g, needs):
    (t,) = n.inputs
    return [tuple(g if i == n.attrs["index"] else None for i in range(len(t.types)))]


register(
    OpDef(
        "tuple_get",
        Kind.OPAQUE,
        _infer_tuple_get,
        lambda n, a, c: np.asarray(a[0][n.attrs["index"]]),
        _vjp_tuple_get,
        takes_tuple=True,
        rows=tuple_rows,
        doc="output `index` of a node with several outputs",
    )
)


def tuple_get(t: Node, index: int) -> Node:
    """Output `index` (0-based, negative counts from the end) of a node with several outputs."""
    if not isinstance(t, Node):
        error(GraphStructureError, "tuple_get", f"expected a graph node with several outputs, got {type(t).__name__}")
    if not t.is_tuple:
        error(GraphStructureError, "tuple_get", f"{t.label} ({t.type_str}) has one output, not a tuple")
    n = len(t.types)
    if not isinstance(index, int | np.integer) or isinstance(index, bool) or not -n <= index < n:
        error(IndexRangeError, "tuple_get", f"index {index!r} is out of range for {t.label}'s {n} outputs")
    return apply("tuple_get", [t], {"index": int(index) % n})


def outputs(t: Node) -> list[Node]:
    """Every output of a node with several outputs, as single nodes."""
    return [tuple_get(t, i) for i in range(len(t.types))]
