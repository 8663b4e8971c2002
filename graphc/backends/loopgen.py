"""What a loop-generating backend (Numba CPU today) needs to know to write a fused kernel.

Backend-neutral facts, rendered by each backend's code generator into its own source:

- `ReduceSpec`: how a reduction op starts, combines and finishes an accumulator (templates in
  the same Python expression language as the elementwise ops' scalar templates). Reductions
  register theirs with the `lowering` decorator under the key `LOOPS`, the lowering that every
  loop-generating backend shares; `reduce_spec(node)` reads it.
- `LoopSpec`: what one loop kernel computes (nodes, external inputs, materialised outputs,
  inlined scalars, the collapsed loop rank and each input's broadcast pattern).
- `broadcast_mask` / `collapse_groups`: which loop dims an input broadcasts along, and which
  adjacent dims one loop can cover (the same broadcast/reduce pattern everywhere).
- `expression(node, operands)`: a node's scalar template applied to operand names.
"""

from dataclasses import dataclass

import numpy as np

from graphc.ops.registry import lowering

__all__ = ["LOOPS", "ReduceSpec", "reduce_spec", "LoopSpec", "broadcast_mask", "collapse_groups", "expression"]

LOOPS = "loops"  # the lowerings key shared by every loop-generating backend


@dataclass(frozen=True)
class ReduceSpec:
    """A reduction the loop generator fuses with its producers.

    init(dtype) -> the accumulator's start value (a Python scalar; the backend writes it as a
    literal of dtype); combine: template over {a} (accumulator) and {b} (value); finalize:
    template over {a} and {n} (the reduced count), or None; axes(node) -> the axes reduced.
    wide: accumulate float32 in float64 within the innermost loop.
    """

    init: object
    combine: str
    axes: object
    finalize: str | None = None
    wide: bool = False


def reduce_spec(node) -> ReduceSpec | None:
    """node's ReduceSpec, if it is a reduction that loop generators fuse with its producers."""
    spec = node.opdef.lowerings.get(LOOPS)
    return spec if isinstance(spec, ReduceSpec) else None


def _zero(dtype):
    return 0


def _lowest(dtype):
    return int(np.iinfo(dtype).min) if dtype.startswith("int") else -np.inf


def _axes(node):
    return tuple(node.attrs["axes"])


lowering("sum", LOOPS)(ReduceSpec(_zero, "({a} + {b})", _axes, wide=True))
lowering("mean", LOOPS)(ReduceSpec(_zero, "({a} + {b})", _axes, finalize="({a} / {n})", wide=True))
# NaN wins, as in np.max
lowering("max", LOOPS)(ReduceSpec(_lowest, "({a} if ({a} >= {b} or {a} != {a}) else {b})", _axes))


@dataclass
class LoopSpec:
    """What a loop kernel computes: nodes in order, external inputs, materialised outputs."""

    nodes: list  # the group's computed nodes (topological), anchor excluded
    inputs: list  # external input nodes (array arguments), in argument order
    outputs: list  # materialised nodes written (array arguments), in argument order
    scalars: dict  # node id -> literal source (0-d constants inlined)
    rank: int  # loop rank after collapsing dims
    bcast: list  # per input: tuple of bools, True where that (collapsed) dim broadcasts


def broadcast_mask(xshape, loop) -> tuple:
    """Per loop dim: True where an input of static shape xshape is broadcast (read at index 0)."""
    r, off = len(loop), len(loop) - len(xshape)
    return tuple(d < off or (xshape[d - off] == 1 and loop[d] != 1) for d in range(r))


def collapse_groups(loop, masks, extra, collapse: bool) -> list[list[int]]:
    """Runs of adjacent loop dims that one loop covers: same broadcast pattern in every mask and
    the same `extra` flag (reduced or not); every dim alone unless `collapse` (all inputs are
    contiguous)."""
    r = len(loop)
    if r == 0:
        return [[]]
    out = [[0]]
    for d in range(1, r):
        same = all(m[d] == m[d - 1] for m in masks) and extra[d] == extra[d - 1]
        if collapse and same:
            out[-1].append(d)
        else:
            out.append([d])
    return out


def expression(node, operands: list[str]) -> str:
    """node's scalar template with `operands` (source expressions) filled in; a broadcast op
    without a template is the identity of its operand."""
    tmpl = node.opdef.scalar_expr(node.attrs)
    return ("{0}" if tmpl is None else tmpl).format(*operands)
