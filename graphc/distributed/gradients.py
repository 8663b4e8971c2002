"""The gradient all-reduce of a data-parallel training step, built in graph ops.

training_graph(loss, optimizer, distributed=True) calls `reduce_step` between the gradients and
the optimizer, so the whole step (forward, backward, one all-reduce, updates) stays one graph:

    flat = concat([w * g1.flat, w * g2.flat, ..., w * s1.flat, ..., w * loss, w])   one flat buffer
    r    = allreduce(flat, "sum", inplace)                                        one collective
    g1'  = reshape(r[a:b] / r[-1], g1.shape), ...                                 back per value

w is this rank's weight (its number of samples), so every reduced value is the mean over the
global batch, exact also when the ranks' shards differ in size; without a weight it is the plain
mean over the ranks (allreduce "mean": the sum divided by the world size). Besides the gradients
the buffer carries the new values of the graph's other state updates (batch-norm running
averages, which so stay equal on every rank) and the loss, whose reduced value (the global
batch's loss) is the same on every rank, so a NaN on any rank is seen by all of them at once.
No node holds the world size: the graph is the same for any number of ranks.
"""

from dataclasses import dataclass, field

from graphc.errors import GradientError
from graphc.ir import dtypes
from graphc.ir.node import Node
from graphc.ir.phase import Phase
from graphc.ir.shapes import is_concrete, numel
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["Reduction", "reduce_step", "GLOBAL_LOSS"]

GLOBAL_LOSS = "distributed/loss"  # the graph output holding the reduced (global batch) loss


@dataclass
class Reduction:
    """What reduce_step added: the flat buffer, its all-reduce, the reduced gradients and state
    updates (by name) and the global loss; `sizes` are the element counts packed, in order."""

    flat: Node
    allreduce: Node
    grads: dict[str, Node]
    states: dict[str, Node]
    loss: Node
    sizes: list[int] = field(default_factory=list)

    @property
    def elements(self) -> int:
        return int(self.flat.shape[0])


def reduce_step(loss: Node, grads: dict[str, Node], weight: Node | None = None, states=None) -> Reduction:
    """Insert one all-reduce of the gradients (and state updates and loss) into loss's graph.

    grads: {parameter: local gradient}. states: names of variables whose updates are averaged too
    (default: every update the graph already has, such as running averages). weight: a scalar
    node, this rank's share (its sample count); None averages the ranks equally.
    Replaces the state updates by their reduced values and names the global loss GLOBAL_LOSS.
    """
    g = loss.graph
    states = [k for k in g.updates if k not in grads] if states is None else list(states)
    parts = [(k, grads[k]) for k in grads] + [(k, g.updates[k]) for k in states] + [(None, loss)]
    dt = "float32"
    for _, n in parts:
        if dtypes.is_float(n.dtype):
            dt = dtypes.promote(dt, n.dtype)
    # Backward-phase nodes of their own scope (not the loss's), so drawings show them as one group.
    with g.phase(Phase.BACKWARD), g.scope("allreduce", unique=True):
        w = None if weight is None else F.cast(weight, dt)
        pieces, sizes = [], []
        for _, n in parts:
            if not is_concrete(n.shape):  # parameters and state are concrete; a symbolic value cannot be packed
                error(
                    GradientError,
                    "training_graph(distributed=True)",
                    f"{n.label} has the symbolic shape {n.type_str}; only values of fixed shape are all-reduced",
                )
            v = F.reshape(F.cast(n, dt), (numel(n.shape),))
            pieces.append(v if w is None else v * w)
            sizes.append(numel(n.shape))
        if w is not None:
            pieces.append(F.reshape(w, (1,)))
        flat = F.concat(pieces)
        red = F.allreduce(flat, "mean" if w is None else "sum", inplace=True)
        total = sum(sizes)
        body = red if w is None else F.slice(red, [0], [total]) / F.slice(red, [total], [total + 1])
        out, start = [], 0
        for (_, n), size in zip(parts, sizes):
            piece = F.slice(body, [start], [start + size])
            out.append(F.cast(F.reshape(piece, n.shape), n.dtype))
            start += size
    reduced_grads = {k: out[i] for i, (k, _) in enumerate(parts[: len(grads)])}
    reduced_states = {k: out[len(grads) + i] for i, k in enumerate(states)}
    for k, node in reduced_states.items():
        g.update(k, node)
    g.output(GLOBAL_LOSS, out[-1], replace=True)
    return Reduction(flat, red, reduced_grads, reduced_states, out[-1], sizes)
