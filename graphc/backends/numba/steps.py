"""The steps a Numba runtime runs (graphc.backends.numba.runtime), each bound once per shape
specialisation: `run(vals, ctx, first)` computes its values into `vals` (node id -> array);
`first` is true on the specialisation's first call (kernels with call-time arguments compile then).
A step that can also be one native call with fixed arguments says so: `native(fixed)`, a
chain.NativeStep or None (chain.py runs consecutive ones as one call).
"""

import functools

import numpy as np

from graphc.backends.base import run_reference
from graphc.backends.numba import batch_split
from graphc.backends.numba.chain import NativeStep, native_step

__all__ = [
    "LoopKernel",
    "SplitLoopKernel",
    "LibraryCall",
    "TupleCall",
    "TupleInto",
    "Projection",
    "Reference",
    "InputView",
    "EmptyReduction",
]


class LoopKernel:
    """A generated loop kernel (a cache.Kernel) and its bound arguments; `dyn` lists the arguments
    known only at call time (position, value id, the shape to view it as): fed arrays, pools,
    fresh results. Without them the kernel is bound (loaded or compiled) at once, its call
    prepared with every argument."""

    __slots__ = ("kernel", "args", "dyn", "fn", "call")

    def __init__(self, kernel, args: tuple, dyn: list):
        self.kernel, self.args, self.dyn = kernel, args, dyn
        self.fn = self.call = None  # fn: the bound kernel, call: fn with args fixed (no call-time args)
        if not dyn:
            self.fn = kernel.bind(args)
            bound = getattr(self.fn, "bound", None)
            self.call = bound(args) if bound is not None else functools.partial(self.fn, *args)

    def native(self, fixed):
        """The call as a NativeStep, where the kernel is native code that returns nothing (bound
        now, or for a call's arrays at each call that brings other ones)."""
        if self.call is not None:
            task = _task_of(self.fn, self.args)
            return None if task is None else NativeStep(task)

        def make(*arrays):
            args = list(self.args)
            for (pos, _, shp), a in zip(self.dyn, arrays):
                args[pos] = a.reshape(shp)
            return _task_of(self.kernel.bind(args), args)

        return native_step(make, [vid for _, vid, _ in self.dyn], fixed)

    def run(self, vals, ctx, first):
        if self.call is not None:
            self.call()
            return
        args = list(self.args)
        for pos, vid, shp in self.dyn:
            args[pos] = vals[vid].reshape(shp)
        self.kernel.bind(args)(*args)  # by the arguments' types: a call-time array's layout may vary


class SplitLoopKernel:
    """A large loop kernel (elementwise, or a reduction that keeps its outer dim) whose outer
    (collapsed) dim is split over this process's cores by graphc (batch_split: each part the same
    serial kernel on a slice, on the native team where the kernel is native code), instead of
    Numba's prange, which needs Numba's threading layer and so Numba itself (about 0.5 s of import
    in every process). `cut`: the positions of the array
    arguments sliced along that dim (the others broadcast over it); argument 0 is its size.
    `rows`: (position, elements per row) of 1-D arguments holding that dim's rows one after the
    other (a reduction's flat result), sliced by whole rows."""

    __slots__ = ("kernel", "args", "dyn", "cut", "rows", "elements")

    def __init__(self, kernel, args: tuple, dyn: list, cut: tuple, elements: int, rows: tuple = ()):
        self.kernel, self.args, self.dyn, self.cut, self.elements = kernel, args, dyn, cut, elements
        self.rows = rows

    def run(self, vals, ctx, first):
        args = list(self.args)
        for pos, vid, shp in self.dyn:
            args[pos] = vals[vid].reshape(shp)
        fn = self.kernel.bind(args)  # by the arguments' types: a slice along dim 0 keeps them
        cut, rows = self.cut, self.rows

        def part_args(lo, hi):
            a = list(args)
            a[0] = hi - lo
            for p in cut:
                a[p] = args[p][lo:hi]
            for p, per in rows:
                a[p] = args[p][lo * per : hi * per]
            return a

        make = getattr(fn, "task", None)
        task = None if make is None else (lambda lo, hi: make(part_args(lo, hi)))
        batch_split.over_batch(args[0], self.elements, lambda lo, hi: fn(*part_args(lo, hi)), task)


class LibraryCall:
    """A library-call lowering (BLAS matmul, conv, softmax rows): fn(out, *inputs)."""

    __slots__ = ("node", "fn", "shape")

    def __init__(self, node, fn, shape):
        self.node, self.fn, self.shape = node, fn, shape

    def native(self, fixed):
        """fn's native task (`fn.task(out, *inputs)`, a matrix product's) as a NativeStep."""
        make, n = getattr(self.fn, "task", None), self.node
        if make is None:
            return None
        return native_step(make, [n.id, *(x.id for x in n.inputs)], fixed, getattr(self.fn, "flops", 0.0))

    def run(self, vals, ctx, first):
        n = self.node
        out = vals.get(n.id)
        if out is None:
            out = vals[n.id] = np.empty(self.shape, n.dtype)
        self.fn(out, *[vals[x.id] for x in n.inputs])


class TupleCall:
    """A library call of a node with several outputs: fn(*inputs) -> its tuple of arrays."""

    __slots__ = ("node", "fn")

    def __init__(self, node, fn):
        self.node, self.fn = node, fn

    def run(self, vals, ctx, first):
        n = self.node
        vals[n.id] = tuple(self.fn(*[vals[x.id] for x in n.inputs]))


class TupleInto:
    """A library call of a node with several outputs that writes them into the arrays of its
    Elements (planned buffers or output pools): fn.into(outs, *inputs); fn None (the builder
    declined): the reference's results are copied in."""

    __slots__ = ("node", "fn", "elements")

    def __init__(self, node, fn, elements: list):
        self.node, self.fn, self.elements = node, fn, elements

    def run(self, vals, ctx, first):
        n = self.node
        outs = tuple(vals[e] for e in self.elements)
        ins = [vals[x.id] for x in n.inputs]
        if self.fn is None:
            for out, res in zip(outs, run_reference(n, ins, ctx)):
                out[...] = res
        else:
            self.fn.into(outs, *ins)
        vals[n.id] = outs


class Projection:
    """One element of a tuple value (the array itself: a projection is an alias)."""

    __slots__ = ("id", "tuple_id", "index")

    def __init__(self, node):
        self.id, self.tuple_id, self.index = node.id, node.inputs[0].id, node.attrs["index"]

    def run(self, vals, ctx, first):
        vals[self.id] = vals[self.tuple_id][self.index]


class Reference:
    """A node's NumPy reference: its result is a fresh array (or tuple of arrays), or with
    `into` is written into the array the schedule gave the node, where it has one."""

    __slots__ = ("node", "into")

    def __init__(self, node, into: bool = False):
        self.node, self.into = node, into

    def run(self, vals, ctx, first):
        n = self.node
        _store(vals, n, run_reference(n, [vals[x.id] for x in n.inputs], ctx), self.into)


class InputView:
    """The reference of a reshape or transpose of a value known only at call time (a fed array):
    while its inputs are the same objects as at the last call, the view made then is the value
    again (a view shows its input's current data, so only the objects matter). A result that is
    not a view of its first input is never kept. The view kept holds the last fed array until
    another is fed or the executable is dropped (held weakly, the view would die with the call)."""

    __slots__ = ("node", "ins", "out")

    def __init__(self, node):
        self.node, self.ins, self.out = node, None, None

    def run(self, vals, ctx, first):
        n = self.node
        ins = [vals[x.id] for x in n.inputs]
        kept = self.ins
        if kept is not None and len(kept) == len(ins) and all(a is b for a, b in zip(ins, kept)):
            vals[n.id] = self.out
            return
        out = run_reference(n, ins, ctx)
        # bounds that overlap the input's: a view of it (a copy is memory of its own)
        view = isinstance(out, np.ndarray) and out.base is not None and np.may_share_memory(out, ins[0])
        self.ins, self.out = (ins, out) if view else (None, None)
        vals[n.id] = out


class EmptyReduction:
    """A reduction over an empty loop: the reference's value for an empty input (0 for sum, NaN
    for mean, its error for max), into the planned or pooled result if there is one."""

    __slots__ = ("node", "shape")

    def __init__(self, node, shape):
        self.node, self.shape = node, shape

    def run(self, vals, ctx, first):
        n = self.node
        _store(vals, n, run_reference(n, [np.empty(self.shape, n.inputs[0].dtype)], ctx), True)


def _task_of(fn, args):
    """The native task of kernel `fn` called with `args`, where it is native code returning nothing."""
    make = getattr(fn, "task", None)
    if make is None or getattr(fn, "ret_type", None) is not None:
        return None
    return make(args)


def _store(vals, n, res, into: bool):
    out = vals.get(n.id) if into else None
    if out is None:
        vals[n.id] = res
    else:
        out[...] = res
