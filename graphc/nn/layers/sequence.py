"""Sequence lengths for padded batches: the context recurrent layers (and masked losses) read.

    with nn.sequence_lengths(lengths):      # lengths: an int32/int64 node of shape (batch,)
        y = nn.LSTM(64, return_sequences=True)(x)

Inside the block, a recurrent layer treats row b of its (batch, time, features) input as
lengths[b] real steps followed by padding: padded steps (t >= lengths[b]) neither change the
state nor produce output (its outputs there are zero), and a reverse direction starts at each
row's own last valid step. `current_lengths()` gives the innermost block's node (None outside
any block, or inside `with sequence_lengths(None):`). Lengths outside [0, time] raise
IndexRangeError naming the layer and the values when the graph runs (graphc.sequence_mask).
"""

import contextlib
import threading

from graphc.errors import DTypeError, GraphStructureError, ShapeError, where
from graphc.ir import dtypes
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.ops import api as F

__all__ = ["sequence_lengths", "current_lengths", "checked_lengths", "step_mask"]

_state = threading.local()


def _stack() -> list:
    if not hasattr(_state, "lengths"):
        _state.lengths = []
    return _state.lengths


@contextlib.contextmanager
def sequence_lengths(lengths):
    """Layers called inside read `lengths` (an int32/int64 node of shape (batch,), or None)."""
    if lengths is not None:
        _check_node("sequence_lengths", lengths)
    stack = _stack()
    stack.append(lengths)
    try:
        yield lengths
    finally:
        stack.pop()


def current_lengths():
    """The lengths node of the innermost `sequence_lengths` block, or None."""
    stack = _stack()
    return stack[-1] if stack else None


def _check_node(owner: str, lengths) -> None:
    loc = user_location()
    if not isinstance(lengths, Node):
        raise GraphStructureError(
            f"{owner}: lengths must be a graph node (an int32/int64 input of shape (batch,)), "
            f"got {type(lengths).__name__}" + where(loc)
        )
    if lengths.is_tuple or not dtypes.is_int(lengths.dtype) or lengths.ndim != 1:
        kind = DTypeError if not lengths.is_tuple and lengths.ndim == 1 else ShapeError
        raise kind(
            f"{owner}: lengths must be an int32/int64 node of shape (batch,), got {lengths.type_str}" + where(loc)
        )


def checked_lengths(owner: str, lengths, x: Node) -> Node:
    """`lengths` checked against x (batch, time, ...) at declaration: same graph, same batch."""
    _check_node(owner, lengths)
    if lengths.graph is not x.graph and not x.graph.tracing:
        raise GraphStructureError(
            f"{owner}: lengths {lengths.label} belong to graph {lengths.graph.name!r}, the input to "
            f"{x.graph.name!r}" + where(user_location())
        )
    if lengths.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{owner}: lengths {lengths.type_str} do not match the batch of the input {x.type_str}"
            + where(user_location())
        )
    return lengths


def step_mask(owner: str, lengths: Node, x: Node) -> Node:
    """Time-major bool mask (time, batch, 1) of x's (batch, time, ...) valid steps; the lengths
    are checked against the time axis when the graph runs."""
    mask = F.sequence_mask(lengths, x.shape[1], caller=owner)  # (batch, time)
    return F.expand_dims(F.transpose(mask, (1, 0)), 2)
