"""Binding loop kernels to a runtime (numba/runtime.py): collapse dims, cut argument views,
generate the source, load the kernel."""

import math
from typing import NamedTuple

import numpy as np

from graphc.backends import loopgen
from graphc.backends.numba import cache, codegen
from graphc.backends.numba.steps import EmptyReduction, LoopKernel, SplitLoopKernel
from graphc.backends.schedule import Storage
from graphc.ir import shapes

# loop elements from which a loop is split over the cores (measured for prange's thread start-up;
# the native team's hand-over is cheaper, but smaller splits have not been timed)
PAR_MIN = 1 << 20


class CallTimeArg(NamedTuple):
    """A kernel argument known only at call time: a fed array, a pool array, a fresh result."""

    pos: int
    value: int  # node id
    shape: tuple  # the shape the kernel sees it as


def _contiguous(rt, v) -> bool:
    arr = rt.static.get(v)
    if arr is not None:
        return arr.flags.c_contiguous
    return rt.schedule.storage.get(v) in (Storage.POOL, Storage.INPUT)


class _Args:
    def __init__(self, rt):
        self.rt, self.args, self.dyn = rt, [], []

    def add_int(self, n):
        self.args.append(int(n))

    def add(self, v, shape, write=False):
        arr = self.rt.static.get(v)
        if arr is None:
            self.dyn.append(CallTimeArg(len(self.args), v, shape))
            self.args.append(None)
            return
        view = arr.reshape(shape)
        # buffers are contiguous, so this is a view; an empty one shares no memory to check
        if write and view.size and not np.shares_memory(view, arr):
            raise AssertionError("output view is not a view")
        self.args.append(view)


def _finish(k, source, a: _Args) -> LoopKernel:
    k.source = source
    return LoopKernel(cache.kernel(source), tuple(a.args), a.dyn)


def _inputs(rt, body, extra_ids):
    ids = {n.id for n in body}
    ins, scalars = [], {}
    for vid in extra_ids:
        ins.append(rt.node(vid))
    for n in body:
        for x in n.inputs:
            if x.id in ids or any(y is x for y in ins):
                continue
            if x.is_const and x.shape == ():
                scalars[x.id] = codegen.literal(x.attrs["value"], x.dtype)
            elif x.id not in scalars:
                ins.append(x)
    return ins, scalars


def _label(nodes):
    return "_".join(dict.fromkeys(n.op for n in nodes))[:80]


def _row_sliced(sizes, cmasks, n_out) -> tuple:
    """The positions of a split loop's arguments cut along its outer dim: after the sizes, the
    inputs that do not broadcast over it, then every output."""
    first = len(sizes)
    return tuple(first + i for i, cm in enumerate(cmasks) if not cm[0]) + tuple(
        first + len(cmasks) + j for j in range(n_out)
    )


def loop_step(rt, k, body, extra_ids) -> LoopKernel | SplitLoopKernel:
    """An elementwise kernel over the group's loop shape (extra_ids: e.g. the matmul result)."""
    loop_static = k.loop_shape
    loop = shapes.concrete(loop_static, rt.env)
    ins, scalars = _inputs(rt, body, extra_ids)
    outs = [n for n in body if n.id in k.outputs]
    a, groups, sizes, cmasks = _bind(rt, loop, loop_static, ins, outs, [False] * len(loop))
    # a large loop is split over the cores by graphc (SplitLoopKernel), its kernel serial: no prange
    ls = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks)
    source = codegen.elementwise_source(ls, _label(body))
    elements = math.prod(loop)
    if elements < PAR_MIN or not sizes or sizes[0] < 2:
        return _finish(k, source, a)
    k.source = source
    return SplitLoopKernel(cache.kernel(source), tuple(a.args), a.dyn, _row_sliced(sizes, cmasks, len(outs)), elements)


def _bind(rt, loop, loop_static, ins, outs, reduced):
    """Collapse the loop's dims into groups (contiguous inputs allowing), and bind the group
    sizes, the inputs (size 1 where broadcast) and the outputs as the kernel's arguments."""
    masks = [loopgen.broadcast_mask(x.shape, loop_static) for x in ins]
    collapse = all(_contiguous(rt, x.id) for x in ins)
    groups = loopgen.collapse_groups(loop, masks, reduced, collapse)
    sizes = [math.prod(loop[d] for d in g) for g in groups]
    a = _Args(rt)
    for s in sizes:
        a.add_int(s)
    cmasks = []
    for x, m in zip(ins, masks):
        cm = tuple(bool(g) and m[g[0]] for g in groups)
        cmasks.append(cm)
        a.add(x.id, tuple(1 if b else s for b, s in zip(cm, sizes)))
    for n in outs:
        a.add(n.id, tuple(sizes), write=True)
    return a, groups, sizes, cmasks


def reduce_step(rt, k):
    """A reduction kernel with its elementwise producers in the loop nest."""
    anchor = rt.node(k.anchor)
    rs = loopgen.reduce_spec(anchor)
    axes = set(rs.axes(anchor))
    body = [rt.node(v) for v in k.node_ids if v != k.anchor]
    src = anchor.inputs[0]
    loop_static = src.shape
    loop = shapes.concrete(loop_static, rt.env)
    if math.prod(loop) == 0:
        # nothing to loop over: the result is the reduction of an empty array, exactly as the
        # reference gives it (0 for sum, NaN for mean, its error for max); producers are empty
        return EmptyReduction(anchor, loop)
    extra = [] if any(n is src for n in body) else [src.id]
    ins, scalars = _inputs(rt, body, extra)
    outs = [n for n in body if n.id in k.outputs]
    reduced = [d in axes for d in range(len(loop))]
    a, groups, sizes, cmasks = _bind(rt, loop, loop_static, ins, outs, reduced)
    cred = tuple(bool(g) and reduced[g[0]] for g in groups)
    kept = tuple(1 if r else s for r, s in zip(cred, sizes))
    a.add(anchor.id, kept, write=True)
    a.add(anchor.id, (math.prod(rt.shape[anchor.id]),), write=True)
    ls = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks)  # serial: split below
    source = codegen.reduce_source(ls, anchor, rs, cred, _label([*body, anchor]))
    if math.prod(loop) < PAR_MIN or not sizes or cred[0] or sizes[0] < 2:
        return _finish(k, source, a)
    # a large reduction whose outer dim is kept: its rows split over the cores as an elementwise
    # loop's are, each part reducing its own rows into its own slice of the result
    k.source = source
    res = len(sizes) + len(ins) + len(outs)  # the result with kept dims, then flat
    cut = _row_sliced(sizes, cmasks, len(outs)) + (res,)
    rows = ((res + 1, math.prod(kept[1:])),)  # the flat result, by whole rows of the kept one
    return SplitLoopKernel(cache.kernel(source), tuple(a.args), a.dyn, cut, math.prod(loop), rows)
