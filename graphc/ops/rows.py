"""Row rules: which axis of an op's output holds the rows of a batch, given its inputs'.

A loop over a batch can be run in parts (one per core, each over some of the rows) when every
row of every value it computes depends on the same row of its inputs alone. An op states this
by its OpDef's `rows` rule: `rows(node, axes)` takes `axes`, the batch axis of each input (None:
the input holds no rows, such as a weight; a tuple for an input with several outputs), and
returns the output's batch axis (None: it holds none; a tuple for an op with several outputs;
SUMMED: the rows are added up, so the parts' results add to the whole's), or raises NotRowwise
where a row of the output reads other rows of an input (a max over the batch, a product
contracting it). Ops with a per-element expression (`scalar`) follow
`broadcast_rows` without saying so; an op that states no rule is taken to mix rows.
"""

from graphc.errors import GraphcError

__all__ = [
    "NotRowwise",
    "SUMMED",
    "broadcast_rows",
    "same_rows",
    "matmul_rows",
    "reduce_rows",
    "summed_rows",
    "sliced_rows",
    "permuted_rows",
    "tuple_rows",
]


class NotRowwise(GraphcError):
    """A row of an op's output reads other rows of its input (the message says how)."""


class _Summed:
    """The row rule's answer for a sum over the batch: a part of the rows gives a partial sum."""

    def __repr__(self):
        return "SUMMED"


SUMMED = _Summed()


def broadcast_rows(node, axes):
    """Elementwise with NumPy broadcasting: the inputs' batch axes meet at one output axis, where
    every input holding no rows has size 1 (or no axis): one holding a full axis there would give
    each row its own values, which a part of the rows would not see."""
    rank = len(node.shape)
    out = None
    for x, a in zip(node.inputs, axes):
        if a is not None:
            b = a + rank - len(x.shape)
            if out is not None and b != out:
                raise NotRowwise(f"{node.op}: batch axes {out} and {b} meet")
            out = b
    if out is None:
        return None
    for x, a in zip(node.inputs, axes):
        j = out - (rank - len(x.shape))
        if a is None and 0 <= j < len(x.shape) and x.shape[j] != 1:
            raise NotRowwise(f"{node.op}: an input without rows ({x.label}: {x.type_str}) spans the batch axis")
    return out


def same_rows(along: str = "axis"):
    """The rule of an op that joins or splits its inputs along the attribute `along`'s axis: every
    input holds rows on one axis, not that one, and so do the outputs."""

    def rule(node, axes):
        if any(a is None for a in axes) or len(set(axes)) != 1:
            raise NotRowwise(f"{node.op}: its inputs do not all hold rows on one axis ({list(axes)})")
        (a,) = set(axes)
        if a == node.attrs[along]:
            raise NotRowwise(f"{node.op}: works along the batch axis {a}")
        return tuple(a for _ in node.types) if node.is_tuple else a

    return rule


def matmul_rows(node, axes):
    """A @ B over the last two axes: the rows of A, the columns of B or a broadcast leading axis
    carry the batch; the contracted axis must not."""
    (x, y), (a, b) = node.inputs, axes
    rank, ra, rb = len(node.shape), len(x.shape), len(y.shape)
    mapped = []
    if a is not None:
        if a == ra - 1:
            raise NotRowwise("matmul: the batch axis is contracted")
        mapped.append(rank - 2 if a == ra - 2 else a + rank - ra)
    if b is not None:
        if b == rb - 2:
            raise NotRowwise("matmul: the batch axis is contracted")
        mapped.append(rank - 1 if b == rb - 1 else b + rank - rb)
    if not mapped:
        return None
    if len(set(mapped)) != 1:
        raise NotRowwise(f"matmul: batch axes {mapped} meet")
    out = mapped[0]
    if out < rank - 2:  # a leading axis: an operand without rows must broadcast along it
        for z, c in ((x, a), (y, b)):
            j = out - (rank - len(z.shape))
            if c is None and 0 <= j < len(z.shape) - 2 and z.shape[j] != 1:
                raise NotRowwise(f"matmul: an operand without rows ({z.type_str}) spans the batch axis")
    elif (out == rank - 2 and b is not None) or (out == rank - 1 and a is not None):
        raise NotRowwise("matmul: the batch meets the other operand's contracted axis")
    return out


def reduce_rows(node, axes):
    """A reduction over the attribute `axes`: rows are kept if the batch axis is not reduced."""
    (a,) = axes
    if a is None:
        return None
    reduced = tuple(node.attrs["axes"])
    if a in reduced:
        raise NotRowwise(f"{node.op}: reduces over the batch axis {a}")
    return a if node.attrs.get("keepdims") else a - sum(1 for r in reduced if r < a)


def summed_rows(node, axes):
    """A sum over the attribute `axes`: as reduce_rows, and SUMMED where the batch axis is summed."""
    (a,) = axes
    if a is not None and a in tuple(node.attrs["axes"]):
        return SUMMED
    return reduce_rows(node, axes)


def sliced_rows(node, axes):
    """A static slice (the attribute `index`: None where an axis is whole): the batch axis must be whole."""
    (a,) = axes
    if a is not None and node.attrs["index"][a] is not None:
        raise NotRowwise(f"{node.op}: slices the batch axis {a}")
    return a


def permuted_rows(node, axes):
    """A permutation of axes (the attribute `perm`): the batch axis moves with it."""
    (a,) = axes
    return None if a is None else tuple(node.attrs["perm"]).index(a)


def tuple_rows(node, axes):
    """One output of a many-output node: that output's batch axis."""
    (a,) = axes
    return None if a is None else a[node.attrs["index"]]
