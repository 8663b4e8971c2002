"""The CUDA runtime of one schedule (graphc.backends.schedule): device memory, kernels, steps.

Per shape specialisation, once: the memory plan's buffers are allocated on the device (typed
views cut from them), and so are the fed inputs, the returned outputs and the masks of random
ops; variables are the graph's device copies (values.py), constants are copied up; every
kernel's arguments are bound (collapsed to the loop rank, as on the CPU). A call copies the
feeds up into their buffers and runs the steps; the executor copies up no variable and down
only the outputs asked for.

Every kernel group runs on the device. A random op's mask is drawn on the host, from the same
generator as the other backends (the same numbers), and copied up (one copy per mask per call).
A group with no CUDA lowering never falls back to the host: compiling it is an error (see
`check_lowerings`).
"""

import math

import numpy as np

from graphc.backends import loopgen
from graphc.backends.base import backend_names, run_reference
from graphc.backends.cuda import device, kernels
from graphc.backends.schedule import ELEMENTWISE, OUT_FUSABLE, REDUCTION, Lowering, Schedule
from graphc.errors import UnsupportedOpError, where
from graphc.fusion import fuse_body
from graphc.ir import shapes
from graphc.ir.subgraph import SubGraph
from graphc.ops.context import RunContext

__all__ = ["Runtime", "check_lowerings"]

BACKEND = "cuda"


def check_lowerings(kernels_, nodes: dict) -> None:
    """An UnsupportedOpError naming the first group's op that has no CUDA lowering (found when
    the graph is compiled, whatever the shapes), in loop bodies too (an op's SubGraph attributes)."""
    for n in nodes.values():
        for body in (v for v in n.attrs.values() if isinstance(v, SubGraph)):
            check_lowerings(fuse_body(body, _fusable), {b.id: b for b in body.nodes})
    for k in kernels_:
        if k.kind == ELEMENTWISE:
            continue
        n = nodes[k.anchor if k.anchor is not None else k.node_ids[0]]
        if k.kind == REDUCTION and k.anchor is not None and loopgen.reduce_spec(n):
            continue
        if k.kind != OUT_FUSABLE and (n.opdef.takes_tuple or (n.opdef.random and not n.inputs)):
            continue  # a projection; a random mask drawn on the host
        if not callable(n.opdef.lowerings.get(BACKEND)):
            raise UnsupportedOpError(
                f"backend 'cuda': op {n.op!r} ({n.label}: {n.type_str}) has no CUDA lowering, and the cuda "
                f"backend never runs an op on the host inside a step; run this graph on another backend "
                f"({', '.join(repr(b) for b in backend_names() if b != BACKEND)})" + where(n.location)
            )


def _fusable(n) -> bool:
    return loopgen.reduce_spec(n) is not None


class Launch:
    """A generated kernel and its bound arguments; `dyn`: (position, value id, shape) of the
    arguments known only at call time (a tuple's elements)."""

    __slots__ = ("fn", "args", "dyn", "grid", "block")

    def __init__(self, fn, args, dyn, grid, block):
        self.fn, self.args, self.dyn, self.grid, self.block = fn, tuple(args), dyn, grid, block

    def run(self, vals, ctx):
        args = self.args
        if self.dyn:
            args = list(args)
            for pos, vid, shp in self.dyn:
                args[pos] = vals[vid].reshape(shp)
        self.fn[self.grid, self.block](*args)


class Call:
    """A library-call lowering: fn(out, *inputs) on device arrays (fn(*inputs) -> tuple for a
    node with several outputs; fn(*inputs, ctx=) if fn.wants_ctx)."""

    __slots__ = ("node", "fn")

    def __init__(self, node, fn):
        self.node, self.fn = node, fn

    def run(self, vals, ctx):
        n = self.node
        ins = [vals[x.id] for x in n.inputs]
        if getattr(self.fn, "wants_ctx", False):  # a scan: its body's random ops read the step
            vals[n.id] = tuple(self.fn(*ins, ctx=ctx))
        elif n.is_tuple:
            vals[n.id] = tuple(self.fn(*ins))
        else:
            self.fn(vals[n.id], *ins)


class Projection:
    __slots__ = ("id", "tuple_id", "index")

    def __init__(self, node):
        self.id, self.tuple_id, self.index = node.id, node.inputs[0].id, node.attrs["index"]

    def run(self, vals, ctx):
        vals[self.id] = vals[self.tuple_id][self.index]


class HostDraw:
    """A random op without inputs: drawn on the host by its reference (the other backends'
    numbers), copied up into its device array."""

    __slots__ = ("node", "out", "transfers")

    def __init__(self, node, out, transfers):
        self.node, self.out, self.transfers = node, out, transfers

    def run(self, vals, ctx):
        host = np.ascontiguousarray(run_reference(self.node, [], ctx))
        self.out.copy_to_device(host.reshape(self.out.shape))
        self.transfers.add("h2d", "random", host.nbytes)


class Fill:
    """A constant result (a reduction over no elements: the reference's value for it)."""

    __slots__ = ("out", "value")

    def __init__(self, out, value):
        self.out, self.value = out, value

    def run(self, vals, ctx):
        from graphc.backends.cuda import library

        library.fill(self.out, self.value)


class Runtime:
    """Schedule `schedule` bound to device memory and kernels; `run` computes one call."""

    def __init__(self, schedule: Schedule, dvalues, transfers, host_feeds: bool = True):
        self.host_feeds = host_feeds  # the inputs are fed from the host (a scan body's are not)
        s = self.schedule = schedule
        self.env, self.shape, self.transfers, self.dvalues = s.env, s.shape, transfers, dvalues
        self.launch = device.launch()
        static: dict = {}
        self.var_arrays: dict = {}  # variable name -> the device array bound
        for n in s.nodes.values():
            if n.is_param:
                static[n.id] = self._var(n.name)
            elif n.is_const:
                host = np.ascontiguousarray(np.array(n.attrs["value"], dtype=n.dtype))
                static[n.id] = device.to_device(host)
                transfers.add("h2d", "constant", host.nbytes)
            elif n.is_input:
                static[n.id] = device.empty(s.shape[n.id], n.dtype)
        for var, vid in s.inplace_updates.items():
            static[vid] = self._var(var)  # the kernel writes the variable's own device array
        for var, _ in s.copy_updates:
            self._var(var)  # written after the call, device to device (it may not be read)
        for i in s.pool_ids:
            static[i] = device.empty(s.shape[i], _dtype(s, i))
        bufs = [device.empty((max(size, 1),), np.uint8) for size in s.plan.sizes]
        for v, b in s.plan.buffer_of.items():
            static[v] = bufs[b][: s.plan_input.nbytes[v]].view(_dtype(s, v)).reshape(s.shape[v] or (1,))
        self.static = static
        self.ctx = RunContext({}, {}, s.env, 0)
        self.steps: list = []
        self.host_checks: list = []  # (node, fed index input, lo, hi): checked before copying up
        from graphc.backends.cuda import library

        library.setup_transfers = transfers  # index maps and offsets the lowerings copy up
        try:
            for st in s.steps:
                self._bind(st)
        finally:
            library.setup_transfers = None

    def _var(self, name):
        a = self.var_arrays[name] = self.dvalues.device_array(name)
        return a

    def node(self, v):
        return self.schedule.nodes[v]

    def current(self) -> bool:
        """Whether every variable still has the device array bound (uploading host writes)."""
        return all(self.dvalues.device_array(k) is a for k, a in self.var_arrays.items())

    # -- binding ---------------------------------------------------------------------------
    def _unsupported(self, n):
        check_lowerings([_Single(n)], {n.id: n})  # raises, naming the op
        raise UnsupportedOpError(f"backend 'cuda': op {n.op!r} cannot run on the device" + where(n.location))

    def _library(self, n):
        fn = n.opdef.lowerings[BACKEND](n, [self.shape[x.id] for x in n.inputs], self.shape[n.id])
        if fn is None:
            raise UnsupportedOpError(
                f"backend 'cuda': op {n.op!r} ({n.label}) has no CUDA kernel for shapes "
                f"{[self.shape[x.id] for x in n.inputs]}" + where(n.location)
            )
        if not n.is_tuple and n.id not in self.static:
            self.static[n.id] = device.empty(self.shape[n.id], n.dtype)
        index = getattr(fn, "index", None)
        if index is not None and self.host_feeds and n.inputs[index[0]].is_input:
            self.host_checks.append((n, *index))
            fn.flag.skip = True  # checked on the host: nothing read back
        return Call(n, fn)

    def _check_indices(self, vals_host: dict, ctx) -> None:
        """A fed index array out of range: the reference's IndexRangeError, before any kernel."""
        for n, pos, lo, hi in self.host_checks:
            idx = vals_host[n.inputs[pos].name]
            if idx.size and (idx.min() < lo or idx.max() >= hi):
                args = [np.zeros(self.shape[x.id], x.dtype) for x in n.inputs]
                args[pos] = idx
                run_reference(n, args, ctx)

    def _bind(self, st):
        k, how = st.kernel, st.lowering
        if how is Lowering.PROJECTION:
            self.steps.append(Projection(self.node(k.node_ids[0])))
        elif how is Lowering.REFERENCE:
            for v in k.node_ids:
                n = self.node(v)
                if not (n.opdef.random and not n.inputs):
                    self._unsupported(n)
                out = self.static.get(n.id)
                if out is None:
                    out = self.static[n.id] = device.empty(self.shape[n.id], n.dtype)
                self.steps.append(HostDraw(n, out, self.transfers))
        elif how in (Lowering.VIEW, Lowering.REFERENCE_ANCHOR):
            self._unsupported(self.node(k.anchor if k.anchor is not None else k.node_ids[0]))
        elif how is Lowering.LOOP:
            self.steps.append(self._loop(k, [self.node(v) for v in k.node_ids], []))
        elif how is Lowering.REDUCE:
            self.steps.append(self._reduce(k))
        elif k.kind == OUT_FUSABLE:
            a = self.node(k.anchor)
            self.steps.append(self._library(a))
            if len(k.node_ids) > 1:
                body = [self.node(v) for v in k.node_ids if v != k.anchor]
                self.steps.append(self._loop(k, body, [a.id]))
        else:
            self.steps.append(self._library(self.node(k.node_ids[0])))

    def _inputs(self, body, extra_ids):
        ids = {n.id for n in body}
        ins, scalars = [self.node(v) for v in extra_ids], {}
        for n in body:
            for x in n.inputs:
                if x.id in ids or any(y is x for y in ins):
                    continue
                if x.is_const and x.shape == ():
                    scalars[x.id] = kernels.templates.literal(x.attrs["value"], x.dtype)
                elif x.id not in scalars:
                    ins.append(x)
        return ins, scalars

    def _args(self, loop, loop_static, ins, outs, reduced):
        masks = [loopgen.broadcast_mask(x.shape, loop_static) for x in ins]
        groups = loopgen.collapse_groups(loop, masks, reduced, True)  # device arrays are contiguous
        sizes = [math.prod(loop[d] for d in g) for g in groups]
        args, dyn, cmasks = [int(n) for n in sizes], [], []
        for x, m in zip(ins, masks):
            cm = tuple(bool(g) and m[g[0]] for g in groups)
            cmasks.append(cm)
            self._arg(args, dyn, x.id, tuple(1 if b else n for b, n in zip(cm, sizes)))
        for n in outs:
            self._arg(args, dyn, n.id, tuple(sizes))
        return args, dyn, groups, sizes, cmasks

    def _arg(self, args, dyn, v, shape):
        arr = self.static.get(v)
        if arr is None:
            dyn.append((len(args), v, shape))
            args.append(None)
        else:
            args.append(arr.reshape(shape))

    def _loop(self, k, body, extra_ids) -> Launch:
        loop_static = k.loop_shape
        loop = shapes.concrete(loop_static, self.env)
        ins, scalars = self._inputs(body, extra_ids)
        outs = [n for n in body if n.id in k.outputs]
        args, dyn, groups, sizes, cmasks = self._args(loop, loop_static, ins, outs, [False] * len(loop))
        spec = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks)
        source = kernels.elementwise_source(spec, _label(body))
        k.source = source
        lc = self.launch
        grid = device.blocks(math.prod(loop), lc.threads, lc.max_blocks)
        return Launch(kernels.load(source), args, dyn, grid, lc.threads)

    def _reduce(self, k):
        anchor = self.node(k.anchor)
        rs = loopgen.reduce_spec(anchor)
        axes = set(rs.axes(anchor))
        body = [self.node(v) for v in k.node_ids if v != k.anchor]
        src = anchor.inputs[0]
        loop = shapes.concrete(src.shape, self.env)
        if math.prod(loop) == 0:  # the reference's value for an empty input (0, NaN, or its error)
            value = run_reference(anchor, [np.empty(loop, src.dtype)], self.ctx)
            return Fill(self._result(anchor), value)
        extra = [] if any(n is src for n in body) else [src.id]
        ins, scalars = self._inputs(body, extra)
        outs = [n for n in body if n.id in k.outputs]
        reduced = [d in axes for d in range(len(loop))]
        args, dyn, groups, sizes, cmasks = self._args(loop, src.shape, ins, outs, reduced)
        cred = tuple(bool(g) and reduced[g[0]] for g in groups)
        self._arg(args, dyn, anchor.id, tuple(1 if r else n for r, n in zip(cred, sizes)))
        spec = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks)
        lc = self.launch
        source = kernels.reduce_source(spec, anchor, rs, cred, _label([*body, anchor]), lc.reduce_threads)
        k.source = source
        n_out = math.prod(n for n, r in zip(sizes, cred) if not r)
        return Launch(kernels.load(source), args, dyn, device.blocks(n_out, 1, lc.max_blocks), lc.reduce_threads)

    def _result(self, n):
        out = self.static.get(n.id)
        if out is None:
            out = self.static[n.id] = device.empty(self.shape[n.id], n.dtype)
        return out

    # -- running ---------------------------------------------------------------------------
    def run(self, arrays: dict, inputs, step: int) -> dict:
        """Every value of one call, by node id, as device arrays (arrays: the checked feeds)."""
        ctx = self.ctx
        ctx.feeds, ctx.step = arrays, step
        if self.host_checks:
            self._check_indices(arrays, ctx)
        vals = dict(self.static)
        for n in inputs:
            host = arrays[n.name]
            if host.size:
                vals[n.id].copy_to_device(host.reshape(vals[n.id].shape))
            self.transfers.add("h2d", "input", host.nbytes)
        for st in self.steps:
            st.run(vals, ctx)
        return vals

    def run_device(self, step: int, loop: tuple) -> dict:
        """Every value of one run whose inputs are already in their device buffers (a scan body)."""
        vals = dict(self.static)
        ctx = self.ctx
        ctx.step, ctx.loop = step, loop
        for st in self.steps:
            st.run(vals, ctx)
        return vals


class _Single:
    """A one-node group, for check_lowerings' message."""

    def __init__(self, n):
        self.kind, self.anchor, self.node_ids = n.opdef.kind.value, None, [n.id]


def _dtype(s, v):
    return s.dtype(v) if hasattr(s, "dtype") else s.nodes[v].dtype


def _label(nodes):
    return "_".join(dict.fromkeys(n.op for n in nodes))[:80]
