"""The batch rows of a scan body: whether its steps keep them apart, and the body over fewer.

A recurrent layer's step treats the rows of its batch alone: row b of the new state reads row
b of the old state and of the step's input, and the weights. A loop like that can run in
parts, each over some rows, one per core, with nothing exchanged between them until the end
(numba/scan_split.py). `batch_rows(body)` says whether a body is such a step, by each op's
row rule (graphc.ops.rows), and which of its outputs add its rows up (a bias gradient summed
over the batch at each step: each part then gives a partial sum, and the parts' sums add);
`body_over(body, rows)` is the same body over `rows` rows:
every node re-applied, so shapes are re-inferred (an op whose attributes fix the batch size
has no row rule, so it never gets here).
"""

from typing import NamedTuple

from graphc.ir.subgraph import SubGraph, trace
from graphc.ops.bodies import reapply
from graphc.ops.rows import SUMMED, NotRowwise

__all__ = ["NotRowwise", "Rows", "batch_rows", "body_over"]


class Rows(NamedTuple):
    """A body's batch: its size (an int or a symbolic dim) and the outputs that sum its rows."""

    size: object
    summed: frozenset  # indices into the body's outputs (never a carry)


def batch_rows(body: SubGraph, num_carry: int) -> Rows:
    """The batch of `body`: every carry and x-slice holds it on axis 0 (size B), no captured
    value holds rows, every op keeps them apart, and every output holds them on axis 0 or (not
    a carry) is a sum over them. Raises NotRowwise saying why not."""
    if not body.inputs:
        raise NotRowwise("the body has no carry or x-slice")
    sizes = {n.shape[0] if n.shape else None for n in body.inputs}
    if len(sizes) != 1 or not isinstance(next(iter(sizes)), int | str):
        raise NotRowwise(f"the carries and x-slices do not share a leading batch axis ({sorted(map(str, sizes))})")
    axes: dict[int, object] = {n.id: 0 for n in body.inputs}
    axes.update((n.id, None) for n in body.captured)
    for n in body.nodes:
        if n.id in axes:
            continue
        if not n.inputs:
            axes[n.id] = None  # a constant
            continue
        rule = n.opdef.row_rule()
        if rule is None:
            raise NotRowwise(f"{n.label} ({n.op}) states no row rule")
        ins = [axes[x.id] for x in n.inputs]
        if any(a is SUMMED for a in ins):
            raise NotRowwise(f"{n.label} ({n.op}) reads a sum over the batch")
        axes[n.id] = rule(n, ins)
    summed = set()
    for i, o in enumerate(body.outputs):
        if axes[o.id] is SUMMED and i >= num_carry:
            summed.add(i)
        elif axes[o.id] != 0:
            raise NotRowwise(f"the body's output {i} ({o.label}) does not hold the batch on axis 0")
    return Rows(next(iter(sizes)), frozenset(summed))


def body_over(body: SubGraph, rows: int) -> SubGraph:
    """`body` over `rows` rows: its carries' and x-slices' axis 0 made `rows`, every node
    re-applied (a body that batch_rows accepts)."""
    types = [((rows, *n.shape[1:]), n.dtype) for n in body.inputs]
    types += [(n.shape, n.dtype) for n in body.captured]
    names = [n.name for n in body.all_inputs]

    sub, _ = trace(
        lambda *args: reapply(body, args),
        types,
        names,
        op="scan rows",
        name=f"{body.graph.name}/rows{rows}",
        enclosing=body.graph,
    )
    k = len(body.inputs)
    return SubGraph(sub.graph, sub.inputs[:k], sub.outputs, sub.inputs[k:])
