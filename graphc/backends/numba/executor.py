"""The Numba executable: a static schedule of fused kernels over planned buffers.

compile: optimize (graphc.passes) -> fuse (graphc.fusion) -> per concrete shape a
specialisation: memory plan (graphc.backends.plan), buffers allocated once, kernel arguments
bound once (views of the buffers, collapsed to the loop rank), kernels generated, loaded from
the disk cache or compiled. A call validates the feeds (same errors as the reference), runs
the steps, and returns arrays from an OutputPool. Parameter updates are written straight
into graph.values' arrays when every reader of the old value has run before (or reads it
at the same index in the same elementwise kernel); otherwise copied in at the end.

Ops with no numba lowering run their NumPy reference inside the schedule (correct, and
their results are fresh arrays each call); random ops always do, so they draw the same
numbers as the reference interpreter.
"""

import math

import numpy as np

from graphc.backends import plan as planning
from graphc.backends.base import Executable, RunContext, optimize_for, run_reference
from graphc.backends.feeds import check_feeds
from graphc.backends.numba import blas
from graphc.backends.threads import variables_lock
from graphc.errors import GraphcError, InputError
from graphc.fusion import fuse, is_loop_op
from graphc.ir import shapes
from graphc.ir.node import Node
from graphc.ops.registry import Kind


def _reduce_spec(node):
    from graphc.backends.loopgen import reduce_spec

    return reduce_spec(node)


def _builder(node):
    f = node.opdef.lowerings.get("numba")
    return f if callable(f) else None


class NumbaExecutable(Executable):
    """A graph compiled to Numba kernels; call it like any Executable."""

    def __init__(
        self, graph, outputs=None, apply_updates: bool | None = None, passes: bool = True, disable=(), trace=None
    ):
        from graphc.backends.numba import lowerings  # noqa: F401  (registers lowerings)

        self.source_graph = graph
        self.optimize_summary = None
        if passes:
            opt, outputs = optimize_for(graph, outputs, disable, trace)
            graph, self.optimize_summary = opt.graph, opt.summary
        super().__init__(graph, outputs, apply_updates)
        roots = [n for _, n in self._outputs] + list(self._updates.values())
        self.kernels = fuse(self.nodes, roots, lambda n: _reduce_spec(n) is not None)
        self._by_id = {n.id: n for n in self.nodes}
        self._specs: dict = {}
        self._ctx = RunContext({}, graph.values, {}, 0)
        if all(shapes.is_concrete(n.shape) for n in self.needed_inputs):
            self._spec({})  # everything is known: generate and compile now

    # -- calling ---------------------------------------------------------------------------
    def __call__(self, feeds: dict | None = None, **kw):
        """One step, holding the lock of the graph's variables for the whole call, as every
        Executable does: planned buffers and in-place updates are used by one call at a time."""
        with variables_lock(self.graph):
            if feeds is not None and not isinstance(feeds, dict):
                raise InputError(f"pass inputs as a dict or keywords, got {type(feeds).__name__}")
            if kw:
                feeds = {**(feeds or {}), **kw}
            arrays, env = check_feeds(self.graph, feeds, self.needed_inputs)
            key = tuple(sorted(env.items()))
            spec = self._specs.get(key)
            if spec is None or not spec.params_current():
                spec = self._spec(env)
            try:
                return spec.run(self, arrays, env)
            finally:
                self.step += 1

    def execute(self, arrays, env):  # the base interface: results of every root
        raise GraphcError("NumbaExecutable runs through __call__")

    def _spec(self, env):
        spec = _Specialisation(self, env)
        self._specs[tuple(sorted(env.items()))] = spec
        return spec


# -- one specialisation per concrete shape ----------------------------------------------------
class _Specialisation:
    def __init__(self, exe: NumbaExecutable, env: dict):
        self.exe = exe
        self.env = env
        g = exe.graph
        nodes = exe.nodes
        self.shape = {n.id: shapes.concrete(n.shape, env) for n in nodes if not n.is_tuple}  # tuples: ref steps
        self.values_ref = {n.name: g.values[n.name] for n in nodes if n.op == "param"}
        out_ids = {n.id for _, n in exe._outputs}
        update_nodes = exe._updates
        self.static: dict[int, np.ndarray] = {}
        for n in nodes:
            if n.op == "param":
                self.static[n.id] = self.values_ref[n.name]
            elif n.op == "const":
                self.static[n.id] = np.array(n.attrs["value"], dtype=n.dtype)

        # pass 1: what each kernel's outputs are: view, ref result, pool array, param, buffer
        kinds = []
        dummies: dict[int, np.ndarray] = {}
        alias: dict[int, int] = {}
        self.produced: dict[int, str] = {n.id: "input" for n in nodes if n.op == "input"}
        for k in exe.kernels:
            kd = self._classify(k, dummies, alias, out_ids)
            kinds.append(kd)
            for v in k.outputs:
                if kd == "ref" or (kd == "ref-anchor" and v == k.anchor):
                    self.produced[v] = "dyn"
                elif v in out_ids and kd != "view":
                    self.produced[v] = "pool"
                else:
                    self.produced[v] = "static"
        views = {k.node_ids[0] for k, kd in zip(exe.kernels, kinds) if kd == "view"}
        generated = {i for i, kd in enumerate(kinds) if kd in ("loop", "reduce", "call", "ref-anchor")}
        # step index reading each value (views read their base's memory)
        readers: dict[int, list[int]] = {}
        for i, k in enumerate(exe.kernels):
            for v in k.inputs:
                readers.setdefault(_base(v, alias), []).append(i)
        self.inplace_updates: dict[str, int] = {}
        self.copy_updates: list = []
        owner = {v: i for i, k in enumerate(exe.kernels) for v in k.outputs}
        for var, u in update_nodes.items():
            i = owner.get(u.id)
            p = g.params[var]
            if (i is not None and i in generated and u.id not in out_ids and u.id not in self.inplace_updates.values()
                    and u.id not in views and self._safe_in_place(i, p, readers, alias)
                    # an output showing the variable (or a view of it) must see the value read
                    and not any(_base(o, alias) == p.id for o in out_ids)):  # fmt: skip
                self.inplace_updates[var] = u.id
                self.static[u.id] = self.values_ref[var]
            else:
                self.copy_updates.append((var, u.id))
        self.pool_ids = [n.id for _, n in exe._outputs if n.id in owner and owner[n.id] in generated]
        self.pool_ids = list(dict.fromkeys(i for i in self.pool_ids if i not in self.static))
        self.pools = {i: planning.OutputPool(self.shape[i], self._by(i).dtype) for i in self.pool_ids}

        # the memory plan: generated/lowered kernels write planned buffers
        steps, nbytes, mayalias = [], {}, {}
        for k, kd in zip(exe.kernels, kinds):
            writes = []
            if kd in ("loop", "reduce", "call", "ref-anchor"):
                writes = [
                    v
                    for v in k.outputs
                    if v not in self.static and v not in self.pools and not (kd == "ref-anchor" and v == k.anchor)
                ]
                if k.kind == "output-fusable" and k.anchor not in k.outputs and kd != "ref-anchor":
                    writes = [k.anchor, *writes]
            for v in writes:
                n = self._by(v)
                nbytes[v] = math.prod(self.shape[v]) * np.dtype(n.dtype).itemsize
            inplace = {}
            if kd in ("loop", "call") and k.kind in ("elementwise", "output-fusable"):
                cands = [v for v in k.inputs if v in nbytes] + ([k.anchor] if k.anchor in writes else [])
                for w in writes:
                    if w != k.anchor:
                        inplace[w] = [r for r in cands if self.shape[r] == self.shape[w]
                                      and self._by(r).dtype == self._by(w).dtype]  # fmt: skip
            # a reference op may return a view of its inputs: its readers keep those alive too
            reads = list(k.inputs) + ([k.anchor] if k.anchor in writes else [])
            reads += [b for v in k.inputs for b in mayalias.get(v, ())]
            if kd in ("ref", "ref-anchor"):
                for v in k.outputs:
                    mayalias[v] = {x for x in k.inputs} | {b for x in k.inputs for b in mayalias.get(x, ())}
            steps.append(planning.Step(reads, writes, inplace))
        keep = [v for v, _ in ((u, 0) for _, u in self.copy_updates)] + list(out_ids)
        self.plan = planning.plan_memory(steps, nbytes, alias, keep=keep)
        bufs = self.plan.allocate()
        for v, b in self.plan.buffer_of.items():
            n = self._by(v)
            nb = nbytes[v]
            self.static[v] = bufs[b][:nb].view(n.dtype).reshape(self.shape[v])

        # pass 2: bind arguments and build the steps
        self.ctx = RunContext({}, g.values, env, 0)
        self.steps = []
        for k, kd in zip(exe.kernels, kinds):
            self._bind(k, kd, dummies)
        self.first = True
        large = any(st[0] == "call" and getattr(st[2], "flops", 0) >= blas.SMALL_FLOPS for st in self.steps)
        self.tuner = blas.Tuner(large)

    # -- helpers ---------------------------------------------------------------------------
    def _by(self, v) -> Node:
        return self.exe._by_id[v]

    def params_current(self) -> bool:
        vals = self.exe.graph.values
        return all(vals.get(k) is a for k, a in self.values_ref.items())

    def _safe_in_place(self, i, p, readers, alias) -> bool:
        k = self.exe.kernels[i]
        for j in readers.get(p.id, ()):
            if j < i:
                continue
            if j > i:
                return False
            # the writing kernel itself reads p: only elementwise code at the same index
            if k.kind not in ("elementwise", "output-fusable") or p.id not in k.inputs:
                return False
            if k.anchor is not None and p in self._by(k.anchor).inputs:
                return False
        # views of p read later are also readers (listed under p by _base)
        return True

    def _classify(self, k, dummies, alias, out_ids) -> str:
        exe = self.exe
        if k.kind == "elementwise":
            return "loop"
        if k.kind == "reduction" and k.anchor is not None and _reduce_spec(self._by(k.anchor)):
            return "reduce"
        if k.kind == "output-fusable":
            return "call" if _builder(self._by(k.anchor)) is not None else "ref-anchor"
        n = self._by(k.node_ids[0])
        if _builder(n) is not None and not n.opdef.random:
            return "call"
        if n.opdef.kind in (Kind.INJECTIVE, Kind.BROADCAST) and len(n.inputs) >= 1:
            x = n.inputs[0]
            if all(self._is_static(y) for y in n.inputs):
                dummy = [self._dummy(y, dummies) for y in n.inputs]
                try:
                    out = np.asarray(n.opdef.ref(n, dummy, RunContext({}, exe.graph.values, {}, 0)))
                except Exception:
                    out = None
                if out is not None and out.shape == self.shape[n.id] and out.dtype == n.dtype \
                        and np.shares_memory(out, dummy[0]):  # fmt: skip
                    dummies[n.id] = out
                    alias[n.id] = x.id
                    return "view"
        return "ref"

    def _is_static(self, n) -> bool:
        return n.op in ("param", "const") or self.produced.get(n.id) == "static"

    def _dummy(self, n, dummies):
        if n.id in dummies:
            return dummies[n.id]
        d = self.static.get(n.id)
        if d is None:
            d = np.zeros(self.shape[n.id], n.dtype)
        dummies[n.id] = d
        return d

    # -- binding ---------------------------------------------------------------------------
    def _bind(self, k, kd, dummies):
        from graphc.backends.numba import loops

        if kd == "view":
            n = self._by(k.node_ids[0])
            arr = n.opdef.ref(n, [self.static[x.id] for x in n.inputs], self.ctx)
            self.static[n.id] = arr
            return
        if kd == "ref":
            for nid in k.node_ids:
                self.steps.append(("ref", self._by(nid)))
            return
        if kd == "call" and k.kind != "output-fusable":
            n = self._by(k.node_ids[0])
            fn = _builder(n)(n, [self.shape[x.id] for x in n.inputs], self.shape[n.id])
            if fn is None:
                self.steps.append(("ref", n))
            else:
                self.steps.append(("call", n, fn))
            return
        if k.kind == "output-fusable":
            a = self._by(k.anchor)
            fn = _builder(a)(a, [self.shape[x.id] for x in a.inputs], self.shape[a.id]) if kd == "call" else None
            self.steps.append(("call", a, fn) if fn is not None else ("ref", a))
            if len(k.node_ids) > 1:
                body = [self._by(v) for v in k.node_ids if v != k.anchor]
                self.steps.append(loops.loop_step(self, k, body, [a.id]))
            return
        if kd == "loop":
            self.steps.append(loops.loop_step(self, k, [self._by(v) for v in k.node_ids], []))
            return
        self.steps.append(loops.reduce_step(self, k))

    # -- running ---------------------------------------------------------------------------
    def run(self, exe, arrays, env):
        vals = dict(self.static)
        for n in exe.needed_inputs:
            vals[n.id] = arrays[n.name]
        for i, pool in self.pools.items():
            vals[i] = pool.get()
        ctx = self.ctx
        ctx.feeds, ctx.step = arrays, exe.step
        first, self.first = self.first, False
        tuner = self.tuner
        blas.large = tuner.pick()
        t0 = tuner.start()
        try:
            self._steps(vals, ctx, first)
        finally:
            blas.restore()
        tuner.done(t0)
        res = []
        for _, n in exe._outputs:
            v = vals[n.id]
            if n.id not in self.pools and (n.id in self.static or v.base is not None):
                v = np.array(v)  # never hand out memory that a later call (or the updates below) overwrites
            res.append(v)
        values = exe.graph.values
        for var, vid in self.copy_updates:
            np.copyto(values[var], vals[vid], casting="unsafe")
        if exe._packing == "single":
            return res[0]
        if exe._packing == "list":
            return res
        return {key: v for (key, _), v in zip(exe._outputs, res)}

    def _steps(self, vals, ctx, first):
        from graphc.backends.numba.cache import ensure_compiled

        for st in self.steps:
            tag = st[0]
            if tag == "loop":
                _, fn, args, dyn = st
                if dyn:
                    args = list(args)
                    for pos, vid, shp in dyn:
                        args[pos] = vals[vid].reshape(shp)
                if first:
                    ensure_compiled(fn, args)
                fn(*args)
            elif tag == "call":
                n, fn = st[1], st[2]
                out = vals.get(n.id)
                ins = [vals[x.id] for x in n.inputs]
                if out is None:
                    out = np.empty(self.shape[n.id], n.dtype)
                    vals[n.id] = out
                fn(out, *ins)
            elif tag == "empty":  # a reduction over an empty loop (loops.reduce_step)
                n, shp = st[1], st[2]
                res = run_reference(n, [np.empty(shp, n.inputs[0].dtype)], ctx)
                if n.id in vals:
                    vals[n.id][...] = res
                else:
                    vals[n.id] = res
            else:
                n = st[1]
                vals[n.id] = run_reference(n, [vals[x.id] for x in n.inputs], ctx)


def _base(v, alias):
    while v in alias:
        v = alias[v]
    return v


__all__ = ["NumbaExecutable", "is_loop_op"]
