"""A scan compiled to one native loop: the body's kernels called from one generated driver.

For a scan node at concrete shapes, `ScanLoop` plans the body once (numba/scan_body.py: fused
kernels, per-step memory, each step's arguments) and generates a driver: an njit function,
loaded through the kernel cache like every generated kernel (a content-addressed module, its
machine code on disk), that takes the trip count T as an argument and runs

    C = INIT                                    # carry buffers
    for t in range(T)  (or T-1 down to 0):
        RS[t] = C;  X = XS[t]                   # the carry-in residual (if saved); the step's x slices
        the body's kernels and calls            # elementwise/reduction kernels, np.dot (BLAS)
        YS[t] = y;  C = new carry               # (through staging buffers if a carry is swapped)
    FINAL = C

so no Python runs per time step, and T (like every size) is an argument: compile time does
not depend on it. The driver has flat arguments (driver_source.py) and is compiled by graphc
itself, its body kernels inlined and np.dot a BLAS gemm (kernel_blas.py), without Numba; one
that does not translate goes through Numba. A nested scan is an in-loop call of the outer
body: its own driver (with tuple arguments, through Numba), called from the outer driver with
buffers fixed for the outer plan.

`numba_scan`, the scan's "numba" lowering, returns the run function `fn(*inputs) -> outputs`
of a `NativeScan`, or None (the schedule then runs the op's NumPy reference loop) when the
body cannot run natively: a random op (its numbers come from NumPy's generator, seeded per
step), an op with no in-loop lowering, a nested scan that cannot. `loop_summary(node, env)`
says which, and why.
"""

import math
import warnings

import numpy as np

from graphc.backends import plan as planning
from graphc.backends.numba import blas, cache, driver_source, scan_split
from graphc.backends.numba.scan_body import BodyPlan, NotNative
from graphc.ir import shapes
from graphc.ops.context import RunContext

__all__ = ["DRIVER_PARAMS", "ScanLoop", "NativeScan", "numba_scan", "loop_summary", "loop_lines"]

DRIVER_HEADER = """# graphc generated scan driver: {label} (source is a pure function of the body's kernels)
import numpy as np
from numba import njit
{imports}


@njit(fastmath={fastmath}, error_model="numpy", nogil=True)
def kernel({params}):
"""
DRIVER_PARAMS = ("T", "INIT", "XS", "FINAL", "YS", "RS", "OFF", "C", "X", "S", "O")  # the driver's first parameters


def _seen(shape) -> tuple:
    """How the driver sees a value of `shape`: as itself, a 0-d value as one element."""
    return tuple(shape) or (1,)


class ScanLoop:
    """Scan `node` at concrete input shapes `in_shapes` and output shapes `out_shapes`: its
    body's plan, its carry/x-slice/staging buffers and its driver. Raises NotNative. `body`:
    the body to run instead of the node's own, of the same inputs and outputs over other
    shapes (a part of the batch's rows: numba/scan_split.py)."""

    def __init__(self, node, in_shapes, out_shapes, nested=False, body=None):
        a = node.attrs
        self.node, self.body = node, a["body"] if body is None else body
        nc = self.nc = a["num_carry"]
        self.nx = a["num_xs"]
        self.ny = len(self.body.outputs) - nc
        self.reverse = a["reverse"]
        env = _dims(self.body, nc, self.nx, in_shapes, out_shapes)
        self.T = _trip_count(node, in_shapes, out_shapes, env)
        self.plan = BodyPlan(self.body, env)
        ins = self.body.inputs
        self.carries = [np.zeros(_seen(shapes.concrete(n.shape, env)), n.dtype) for n in ins[:nc]]
        self.xbufs = [np.zeros(_seen(shapes.concrete(n.shape, env)), n.dtype) for n in ins[nc:]]
        # a new carry showing another carry's buffer (a swap) is staged, or it would be overwritten first
        carry_ids = [n.id for n in ins[:nc]]
        outs = self.body.outputs
        self.staged = any(self.plan.base(o.id) in carry_ids and self.plan.base(o.id) != carry_ids[i]
                          for i, o in enumerate(outs[:nc]))  # fmt: skip
        self.stage = [np.zeros_like(c) for c in self.carries] if self.staged else []
        self.out_types = scan_split.output_types(node, out_shapes)
        # captured matrices an in-loop product reads: given to it C-ordered (see NativeScan.into)
        read = {v for st in self.plan.steps if st.call is not None and st.call.flops for v in st.ins}
        self.product_caps = [k for k, n in enumerate(self.body.captured) if n.id in read and len(n.shape) == 2]
        # the flat driver graphc compiles itself (driver_source.py); an inner loop keeps tuples
        self.flat = None if nested else driver_source.flat_driver(self)
        if self.flat is None:
            self.source = self._driver_source()
            self.driver = self._numba_driver()
        else:
            self.source = self.flat.source
            self.kernel = cache.composite_kernel(self.source, self.flat.parts, self._numba_driver)
            self.driver = None  # bound to the arguments' types at compile

    def _numba_driver(self):
        """The driver's Numba dispatcher (its module imports the body kernels' modules: loaded first)."""
        for st in self.plan.steps:
            if st.call is None:
                cache.load(st.source)
        return cache.load(self.source)

    # -- the driver ------------------------------------------------------------------------
    def _driver_source(self) -> str:
        """The driver with tuple arguments (a loop with a nested scan: Numba compiles it)."""
        steps = self.plan.steps
        imports = [f"from {st.callee[0]} import {st.callee[1]} as f{i}" for i, st in enumerate(steps) if st.callee]
        params = [*DRIVER_PARAMS, *(f"P{i}" for i in range(len(steps)))]
        lines = driver_source.body_lines(self, lambda g, k: f"{g}[{k}]", lambda i, st: st.statement(f"f{i}", f"P{i}"))
        return driver_source.driver_text(self, DRIVER_HEADER, imports, params, lines)

    # -- binding ---------------------------------------------------------------------------
    def arguments(self, init, xs, caps, final, ys, rs) -> tuple[tuple, bool]:
        """(the driver's arguments, stale): init/xs/caps are the scan's input arrays, final/ys/rs
        the arrays its outputs go to (all in their own shapes); stale as in BodyPlan.arrays."""
        fixed, stale = self.bind_body(caps)
        return self.call_args(init, xs, final, ys, rs, fixed), stale

    def bind_body(self, caps) -> tuple[tuple, bool]:
        """(C, X, S, O and every step's arguments, stale) with the captured arrays `caps`."""
        body = self.body
        own = zip(body.inputs, [*self.carries, *self.xbufs])  # buffers seen as the body's values
        inputs = {n.id: b.reshape(b.shape if n.shape else ()) for n, b in own}
        inputs.update((n.id, np.asarray(c)) for n, c in zip(body.captured, caps))
        vals, stale = self.plan.arrays(inputs)
        steps = self.plan.bind(vals)
        stale = stale or any(st.call is not None and st.call.stale for st in self.plan.steps)
        outs = []
        for o, v in zip(body.outputs, self.plan.outputs):
            a = vals[v]
            if not a.flags.c_contiguous:  # a captured value passed through, laid out otherwise
                raise NotNative(f"the body's output {o.label} is not contiguous at run time")
            outs.append(a.reshape(-1))
        flat = [tuple(a.reshape(-1) for a in arrays) for arrays in (self.carries, self.xbufs, self.stage)]
        return (*flat, tuple(outs), *steps), stale

    def call_args(self, init, xs, final, ys, rs, fixed, offsets=None) -> tuple:
        """The driver's arguments: the trip count, then the scan's arrays seen flat (stacked
        ones as [T, size]; all contiguous), where in each stacked row the loop's values start
        (`offsets`, for xs, ys and rs in turn: 0 by default), then `fixed` (bind_body's)."""

        def flat(arrays, stacked=False):
            return tuple(a.reshape((a.shape[0], a[0].size if len(a) else math.prod(a.shape[1:]))) if stacked
                         else a.reshape(-1) for a in arrays)  # fmt: skip

        if offsets is None:
            offsets = (0,) * (len(xs) + len(ys) + len(rs))
        arrays = (flat(init), flat(xs, True), flat(final), flat(ys, True), flat(rs, True), tuple(offsets))
        grouped = (self.T, *arrays, *fixed)
        return grouped if self.flat is None else driver_source.flatten(self.flat.counts, grouped)

    def compile(self, args: tuple) -> None:
        """Compile (or load from the disk cache) the body's kernels, then the driver."""
        with warnings.catch_warnings():  # Numba's np.dot on a strided view copies it: correct, said in the docs
            warnings.filterwarnings("ignore", message=r"(?s).*is faster on contiguous arrays")
            if self.flat is not None:  # graphc's own compile (body kernels inlined), else Numba's
                self.driver = self.kernel.bind(args)
                return
            self.plan.compile(list(args[len(DRIVER_PARAMS) :]))
            cache.ensure_compiled(self.driver, args)

    def describe(self) -> list[str]:
        name = cache.source_hash(self.source)
        return [f"native loop: driver gk_{name}, T={self.T}, {len(self.plan.steps)} body steps"] + [
            "  " + x for x in self.plan.describe()
        ]


class NativeScan:
    """The run function of a scan's numba lowering: `fn.into(outs, *inputs)` writes the scan's
    outputs (*final, *ys, *residuals) into `outs`, the arrays the schedule gives them (planned
    buffers of the enclosing graph, or output pools where returned: see schedule.WritesOutputs);
    `fn(*inputs)` returns them in arrays of its own output pools.

    The steps' arguments are bound at the first call and again when a captured array is
    another object than the last call's (a variable's array stays the same object; a value a
    reference op computes is new at every call). Should a view of a carried value turn out a
    copy at binding (not seen in tests), it falls back to the reference loop for good.
    """

    def __init__(self, node, loop: ScanLoop):
        self.node, self.loop = node, loop
        self.pools = None  # made on the first call that returns arrays of its own
        self._caps = None
        self._fixed = None
        self._stale = False
        self._ordered: list = []  # (captured index, C-ordered buffer): see _c_ordered
        # the loop whose C-ordered copies this one reads, made by it first (scan_split.py's parts
        # of one call share them: one copy per call), or None: its own
        self.ordered_by: NativeScan | None = None
        self.fallback = None  # why the reference loop runs instead, once binding found out
        # what one call multiplies (the executor tunes BLAS threads for calls with large products)
        self.flops = loop.T * sum(st.call.flops for st in loop.plan.steps if st.call is not None)
        # products of LOOP_SMALL_FLOPS and more in its steps: a tuner of its own times its driver
        # calls on 1 and on all cores (a loop's products gain from threads otherwise than the others)
        self.threaded = loop.plan.flops >= blas.LOOP_SMALL_FLOPS
        self.tuner = blas.Tuner(self.threaded)

    def __call__(self, *inputs):
        if self.pools is None:
            self.pools = [planning.OutputPool(s, d) for s, d in self.loop.out_types]
        outs = tuple(p.get() for p in self.pools)
        self.into(outs, *inputs)
        return outs

    def into(self, outs, *inputs) -> None:
        """Run the scan on `inputs`, writing its outputs into `outs` (C-contiguous, of the
        output types, not overlapping the inputs)."""
        lp = self.loop
        nc, nx, ny = lp.nc, lp.nx, lp.ny
        if self.fallback is None:
            init = [np.ascontiguousarray(a) for a in inputs[:nc]]
            xs = [np.ascontiguousarray(a) for a in inputs[nc : nc + nx]]
            tuner = self.tuner
            blas.use(tuner.pick())
            t0 = tuner.start()
            if self.run(init, xs, inputs[nc + nx :], outs[:nc], outs[nc : nc + ny], outs[nc + ny :]):
                tuner.done(t0)
                return
        for out, res in zip(outs, self._reference(inputs)):
            out[...] = res

    def run(self, init, xs, caps, final, ys, rs, offsets=None) -> bool:
        """One run of the driver: init/xs/caps the scan's inputs, final/ys/rs the arrays its
        outputs go to, each seen flat without a copy (stacked ones may be wider than the loop:
        `offsets` then says where its values start in each row, as scan_split.py runs a part of
        the batch's rows); False if binding found that the loop must run the reference
        (self.fallback says why)."""
        args = self.prepare(init, xs, caps, final, ys, rs, offsets)
        if args is None:
            return False
        self.loop.driver(*args)
        return True

    def task(self, args):
        """The driver's call on `args` (prepare's) as a native.NativeTask, or None (a driver
        that Numba runs)."""
        make = getattr(self.loop.driver, "task", None)
        return None if make is None else make(args)

    def prepare(self, init, xs, caps, final, ys, rs, offsets=None) -> tuple | None:
        """The driver's arguments for run's, bound and compiled; None if the reference must run."""
        lp = self.loop
        owner = self.ordered_by
        rebind = self._fixed is None or self._stale or any(a is not b for a, b in zip(caps, self._caps))
        rebind = rebind or (owner is not None and self._ordered is not owner._ordered)
        if rebind:
            self._ordered = self._c_ordered(caps) if owner is None else owner._ordered
            own = list(caps)
            for k, buf in self._ordered:
                own[k] = buf
            try:
                self._fixed, self._stale = lp.bind_body(own)
            except NotNative as e:
                self.fallback = str(e)
                return None
        for k, buf in self._ordered if owner is None else ():  # at every call: it may have changed in place
            np.copyto(buf, caps[k])
        if rebind:
            self._caps = tuple(caps)
        args = lp.call_args(init, xs, final, ys, rs, self._fixed, offsets)
        if rebind:
            lp.compile(args)
        return args

    def _c_ordered(self, caps) -> list:
        """(k, buffer) for each captured matrix an in-loop product reads that is laid out other
        than C-ordered (a transposed weight in a gradient's reverse loop): the loop's products
        read a C-ordered copy, made at every call, as OpenBLAS's sgemm with a transposed operand
        is slower at a step's shapes (32x512 by the transpose of 128x512: 85 us against 50 on
        one core, measured side by side); the copy costs one pass over the matrix per call,
        against one per step."""
        out = []
        old = dict(self._ordered)
        for k in self.loop.product_caps:
            a = np.asarray(caps[k])
            if a.size > 1 and not a.flags.c_contiguous and self.loop.T > 1:  # product_caps: matrices
                buf = old.get(k)
                if buf is None or buf.shape != a.shape or buf.dtype != a.dtype:
                    buf = np.empty(a.shape, a.dtype)
                out.append((k, buf))
        return out

    def _reference(self, inputs):
        return _reference(self.node, self.loop.plan.env, self.loop.T, inputs)

    def describe(self) -> list[str]:
        if self.fallback is not None:
            return [f"reference loop: {self.fallback}"]
        return self.loop.describe()


# -- dims ---------------------------------------------------------------------------------------
def _dims(body, nc, nx, in_shapes, out_shapes) -> dict:
    """The body's symbolic dims bound by the concrete shapes of the scan's inputs and outputs."""
    pairs = [(n.shape, s) for n, s in zip(body.inputs[:nc], in_shapes[:nc])]
    pairs += [(n.shape, s[1:]) for n, s in zip(body.inputs[nc:], in_shapes[nc : nc + nx])]
    pairs += [(n.shape, s) for n, s in zip(body.captured, in_shapes[nc + nx :])]
    pairs += [(n.shape, s[1:]) for n, s in zip(body.outputs[nc:], out_shapes[nc:])]
    env = {}
    for sym, conc in pairs:
        for d, c in zip(sym, conc):
            if isinstance(d, str):
                env[d] = c
    return env


def _trip_count(node, in_shapes, out_shapes, env) -> int:
    a = node.attrs
    nc, nx = a["num_carry"], a["num_xs"]
    if nx:
        return in_shapes[nc][0]
    if len(out_shapes) > nc:
        return out_shapes[nc][0]
    length = a["length"]
    return length if isinstance(length, int) else env.get(length, 0)


def _reference(node, env, T, inputs) -> tuple:
    """The scan's outputs by its reference loop (`env`: the body's dims, T: the trip count)."""
    env = {**env, **_length_env(node, T)}
    return tuple(node.opdef.ref(node, list(inputs), RunContext({}, {}, env, 0)))


def _length_env(node, T) -> dict:
    length = node.attrs["length"]
    return {length: T} if isinstance(length, str) else {}


# -- lowerings ----------------------------------------------------------------------------------
def numba_scan(node, in_shapes, out_shapes):
    """The scan's numba lowering: a NativeScan's run function, a SplitScan's where the loop runs
    in parts over its batch rows (scan_split.py), or None (the reference loop)."""
    try:
        parts = scan_split.plan_parts(node, in_shapes, out_shapes)
        if parts is not None:
            try:
                nc, nx = node.attrs["num_carry"], node.attrs["num_xs"]
                ins, outs = scan_split.part_shapes(in_shapes, out_shapes, nc, nx, parts.rows, parts.summed)
                runs = [NativeScan(node, ScanLoop(node, ins, outs, body=parts.body)) for _ in range(parts.count)]
                env = _dims(node.attrs["body"], nc, nx, in_shapes, out_shapes)
                T = runs[0].loop.T

                def reference(inputs):
                    return _reference(node, env, T, inputs)

                return scan_split.SplitScan(node, runs, parts.rows, parts.summed, out_shapes, reference)
            except NotNative:
                pass  # the whole loop may still run natively
        return NativeScan(node, ScanLoop(node, in_shapes, out_shapes))
    except NotNative:
        return None


def loop_summary(node, env: dict | None = None) -> str:
    """How the numba backend runs scan `node` at the dims `env`: 'native loop: ...' with the
    body's steps, or 'reference loop: <why>'."""
    env = env or {}
    in_shapes = [shapes.concrete(x.shape, env) for x in node.inputs]
    out_shapes = [shapes.concrete(s, env) for s, _ in node.types]
    try:
        return "\n".join(ScanLoop(node, in_shapes, out_shapes).describe())
    except NotNative as e:
        return f"reference loop: {e}"


def loop_lines(exe) -> list[str]:
    """For NumbaExecutable.summary: how each specialisation of `exe` runs each of its scans,
    one line per scan node (its native loop's steps indented below it)."""
    lines = []
    for key, rt in exe.runtimes.items():
        runs = (NativeScan, scan_split.SplitScan)
        native = {st.node.id: st.fn for st in rt.steps if isinstance(getattr(st, "fn", None), runs)}
        at = ", ".join(f"{k}={v}" for k, v in key)
        for n in exe.nodes:
            if getattr(n.opdef.lowerings.get("numba"), "builder", None) is not numba_scan:
                continue
            fn = native.get(n.id)
            text = fn.describe() if fn is not None else loop_summary(n, dict(key)).splitlines()
            lines.append(f"{n.op}#{n.id}{f' ({at})' if at else ''}: {text[0]}")
            lines += ["  " + x for x in text[1:]]
    return lines
