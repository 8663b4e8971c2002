"""The Numba CPU runtime of one schedule (graphc.backends.schedule): memory, kernels, steps.

Per shape specialisation: the planned buffers are allocated once; variables, constants,
in-place updates and views get their arrays; every kernel's arguments are bound once (views
of the buffers, collapsed to the loop rank: numba/loops.py), its source generated and the
kernel loaded from the disk cache or compiled; BLAS's thread count is tuned for the large
matrix products. A call runs the bound steps in order and returns every value by node id.
"""

import numpy as np

from graphc.backends import plan as planning
from graphc.backends.base import run_reference
from graphc.backends.numba import accumulate, blas, chain, loops, scan_split
from graphc.backends.numba.steps import (
    InputView,
    LibraryCall,
    Projection,
    Reference,
    SplitLoopKernel,
    TupleCall,
    TupleInto,
)
from graphc.backends.schedule import OUT_FUSABLE, Element, Lowering, Schedule, Storage
from graphc.ops.context import RunContext
from graphc.ops.registry import Kind

__all__ = ["Runtime"]


class Runtime:
    """Schedule `schedule` bound to memory and kernels; `run` computes one call."""

    def __init__(self, schedule: Schedule, variables: dict):
        s = self.schedule = schedule
        self.env, self.shape = s.env, s.shape
        # the variables read, and those written in place (whose old value may not be read)
        self.values_ref = {n.name: variables[n.name] for n in s.nodes.values() if n.is_param}
        self.values_ref.update((var, variables[var]) for var in s.inplace_updates)
        static: dict[int, np.ndarray] = {}
        for n in s.nodes.values():
            if n.is_param:
                static[n.id] = self.values_ref[n.name]
            elif n.is_const:
                static[n.id] = np.array(n.attrs["value"], dtype=n.dtype)
        for var, vid in s.inplace_updates.items():
            static[vid] = self.values_ref[var]  # the kernel writes the variable's own array
        self.pools = {i: planning.OutputPool(s.shape[i], s.dtype(i)) for i in s.pool_ids}
        bufs = s.plan.allocate()
        for v, b in s.plan.buffer_of.items():
            static[v] = bufs[b][: s.plan_input.nbytes[v]].view(s.dtype(v)).reshape(s.shape[v])
        self.static = static
        self.ctx = RunContext({}, variables, s.env, 0)
        self.steps: list = []
        for st in s.steps:
            self._bind(st)
        self.first = True
        calls = (LibraryCall, TupleCall, TupleInto, accumulate.AccumulateCall)
        large = any(isinstance(st, calls) and getattr(st.fn, "flops", 0) >= blas.SMALL_FLOPS for st in self.steps)
        large = large or any(isinstance(st, SplitLoopKernel) for st in self.steps)  # its split: the tuner's count
        self.tuner = blas.Tuner(large)
        # a loop run in parts: the products run on graphc's threads too (blas.own_threads)
        self.own_threads = any(isinstance(getattr(st, "fn", None), scan_split.SplitScan) for st in self.steps)
        # what a call runs: the steps, native runs of them as one call each (chain.py); the arrays
        # bound for good are the static ones that no feed or output pool replaces at a call
        fed = {n.id for n in s.nodes.values() if n.is_input}
        fixed = {v: a for v, a in static.items() if v not in fed and v not in self.pools}
        self.program = chain.group(self.steps, fixed, not self.own_threads, fed=fed, pooled=set(self.pools))

    def node(self, v):
        return self.schedule.nodes[v]

    def params_current(self, variables) -> bool:
        """Whether every variable still has the array this runtime writes and reads."""
        return all(variables.get(k) is a for k, a in self.values_ref.items())

    # -- binding ---------------------------------------------------------------------------
    def _library(self, n):
        fn = n.opdef.lowerings[self.schedule.backend](n, [self.shape[x.id] for x in n.inputs], self.shape[n.id])
        # a builder may decline a case: the reference then writes the planned result
        if n.id in self.schedule.elements:  # it writes its outputs into the Elements' memory
            return TupleInto(n, fn, self.schedule.elements[n.id])
        if fn is None:
            return Reference(n, into=True)
        return TupleCall(n, fn) if n.is_tuple else LibraryCall(n, fn, self.shape[n.id])

    def _bind(self, st):
        k, how = st.kernel, st.lowering
        if how is Lowering.VIEW:
            n = self.node(k.node_ids[0])
            self.static[n.id] = n.opdef.ref(n, [self.static[x.id] for x in n.inputs], self.ctx)
        elif how is Lowering.REFERENCE:
            for v in k.node_ids:
                n = self.node(v)
                value = self._of_shapes(n)
                if value is not None:
                    self.static[v] = value
                elif n.opdef.kind in (Kind.INJECTIVE, Kind.BROADCAST) and n.opdef.pure and not n.is_tuple:
                    self.steps.append(InputView(n))  # a view of a fed array (the schedule's probe saw none)
                else:
                    self.steps.append(Reference(n))
        elif how is Lowering.PROJECTION:
            n = self.node(k.node_ids[0])
            element = self.schedule.alias.get(n.id)
            if isinstance(element, Element) and self.schedule.storage[element] is Storage.STATIC:
                self.static[n.id] = self.static[element]  # its planned buffer, bound once
            else:
                self.steps.append(Projection(n))
        elif how is Lowering.LOOP:
            self.steps.append(loops.loop_step(self, k, [self.node(v) for v in k.node_ids], []))
        elif how is Lowering.REDUCE:
            self.steps.append(loops.reduce_step(self, k))
        elif k.kind == OUT_FUSABLE:
            a = self.node(k.anchor)
            product = self._library(a) if how is Lowering.CALL else Reference(a)
            if len(k.node_ids) == 1:
                self.steps.append(product)
                return
            body = [self.node(v) for v in k.node_ids if v != k.anchor]
            epilogue = loops.loop_step(self, k, body, [a.id])
            acc = self._accumulating(k, a, body, product, epilogue)
            self.steps.extend([acc] if acc is not None else [product, epilogue])
        else:
            self.steps.append(self._library(self.node(k.node_ids[0])))

    def _of_shapes(self, n):
        """The value of a node that reads only its inputs' shapes (shape_size of a symbolic dim,
        full_like), concrete in this specialisation: computed once, here, read-only. None for
        any other node, and for an output (the caller owns what a call returns)."""
        op = n.opdef
        if op.reads_values or not op.pure or n.is_tuple or n.id in self.schedule.outputs:
            return None
        stand_ins = [np.broadcast_to(np.zeros((), x.dtype), self.shape[x.id]) for x in n.inputs]
        value = np.array(run_reference(n, stand_ins, self.ctx))
        value.flags.writeable = False
        return value

    def _accumulating(self, k, a, body, product, epilogue):
        """An AccumulateCall for a product whose epilogue adds it, scaled, to the variable its
        one output overwrites in place (accumulate.py), or None."""
        if not isinstance(product, LibraryCall) or getattr(product.fn, "accumulate", None) is None:
            return None
        if len(k.outputs) != 1 or k.anchor in k.outputs:
            return None
        (out,) = k.outputs
        form = accumulate.affine_epilogue(body, a.id, out, self.ctx)
        if form is None:
            return None
        y, alpha, beta = form
        buf = self.static.get(out)
        if buf is not None and buf is self.static.get(y) and self.shape.get(y) == self.shape[a.id]:
            return accumulate.AccumulateCall(a, out, y, alpha, beta, product, epilogue)  # over y in place
        if _broadcasts(self.shape.get(y), self.shape[a.id]) and self.shape[out] == self.shape[a.id]:
            # y a bias broadcast over the product's rows: out starts as y, then gemm adds into it
            return accumulate.AccumulateCall(a, out, y, alpha, beta, product, epilogue, fill=True)
        return None

    # -- running ---------------------------------------------------------------------------
    def run(self, arrays: dict, inputs, step: int) -> dict:
        """Every value of one call, by node id (arrays: the checked feeds, by input name)."""
        vals = dict(self.static)
        for n in inputs:
            vals[n.id] = arrays[n.name]
        for i, pool in self.pools.items():
            vals[i] = pool.get()
        ctx = self.ctx
        ctx.feeds, ctx.step = arrays, step
        first, self.first = self.first, False
        tuner = self.tuner
        blas.large = tuner.pick()
        blas.own_threads = self.own_threads
        t0 = tuner.start()
        try:
            for st in self.program:
                st.run(vals, ctx, first)
        finally:
            blas.own_threads = False
            blas.restore()
        tuner.done(t0)
        return vals


def _broadcasts(shape, to) -> bool:
    """Whether an array of `shape` broadcasts to `to` along its leading (row) axes only."""
    if shape is None or len(shape) > len(to) or not shape:
        return False
    return all(d == 1 for d in shape[: len(shape) - 1]) and shape[-1] == to[-1]
