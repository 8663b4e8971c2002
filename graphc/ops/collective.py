"""Collective ops: the all-reduce that data-parallel training puts between gradients and updates.

    r = gc.allreduce(flat, op="sum")    # elementwise sum of `flat` over every process of the world

Every process (rank) of the world runs the same graph; at this node each contributes its value
and every one receives the sum (or the mean) over all of them. The world is the process's
`graphc.distributed.world()` (MPI through mpi4py under `mpiexec`, else a world of one, where the
op is the identity and MPI is never imported). The op runs its reference on every backend: one
`Allreduce` call, in place on the flat buffer when the graph builder says no other node reads it.
"""

import numpy as np

from graphc.errors import AttributeValueError, DTypeError
from graphc.ir import dtypes
from graphc.ir.node import Node
from graphc.ops.registry import Kind, OpDef, apply, error, register

__all__ = ["allreduce"]

OPS = ("sum", "mean")


def _infer(inputs, attrs):
    x = inputs[0]
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"needs a float input, got {x.type_str}")
    return x.shape, x.dtype


def _owned(buf: np.ndarray, ctx) -> bool:
    """Whether `buf` may be overwritten: writable, contiguous, and no fed array or variable."""
    if not (buf.flags.writeable and buf.flags.c_contiguous):
        return False
    others = [*getattr(ctx, "feeds", {}).values(), *getattr(ctx, "params", {}).values()]
    return not any(np.may_share_memory(buf, a) for a in others)


def _ref(node, args, ctx):
    from graphc.distributed import world  # lazy: MPI is imported only by a world of several

    w = world()
    x = args[0]
    if w.size == 1:
        return x  # sum and mean over a world of one are the value itself
    buf = x if node.attrs["inplace"] and _owned(x, ctx) else np.array(x, order="C")
    w.allreduce_(buf)
    if node.attrs["op"] == "mean":
        buf /= np.asarray(w.size, buf.dtype)
    return buf


def _vjp(node, g, needs):
    # y_r = sum_s x_s on every rank r, so dL/dx_s = sum_r dL/dy_r: the same all-reduce of the
    # cotangents (and for the mean, the same mean). The cotangent is another node's buffer.
    return [allreduce(g, node.attrs["op"])]


register(
    OpDef(
        "allreduce",
        Kind.OPAQUE,
        _infer,
        _ref,
        _vjp,
        # Its value is not a function of its inputs alone (it is the other ranks' data too): it must
        # never be folded at compile time or merged with another all-reduce.
        external=True,
        reads_values=False,
        doc="sum (or mean) of x over every process of graphc.distributed.world(); its gradient is itself",
    )
)


def allreduce(x: Node, op: str = "sum", inplace: bool = False) -> Node:
    """The elementwise sum (op="sum") or mean (op="mean") of `x` over every process of the world.

    inplace=True lets the collective overwrite x's buffer (for a value no other node reads, such
    as the flat gradient buffer built by training_graph(distributed=True)); a fed array or a
    variable is never overwritten.
    """
    if not isinstance(x, Node):
        error(DTypeError, "allreduce", f"x must be a graph node, got {type(x).__name__}")
    if op not in OPS:
        error(AttributeValueError, "allreduce", f"op must be one of {', '.join(OPS)}, got {op!r}")
    return apply("allreduce", [x], {"op": op, "inplace": bool(inplace)})
