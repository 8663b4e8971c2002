"""A scan body planned for a native loop: its schedule, its per-step memory, each step's arguments.

`BodyPlan(body, env)` fuses the body (graphc.fusion.fuse_body) and schedules it like any graph:
`BodySchedule` is a graphc.backends.schedule.Schedule over the in-loop lowerings (key IN_LOOP),
with the same typed steps (Lowering), the same Storage, Elements for calls with several outputs,
the memory plan's input and the plan. On top of it BodyPlan builds what the loop's driver runs:

  LOOP / REDUCE  generated elementwise / reduction kernels (graphc.backends.loopgen, codegen.py),
                 never parallel (a prange in every step would pay its thread start-up T times);
  CALL           the op's in-loop lowering (the `lowering` decorator's key IN_LOOP): a statement
                 the driver runs on the call's arguments (matmul: np.dot, which Numba lowers to
                 BLAS; a nested scan: its own driver, writing its Elements), then the group's
                 generated epilogue;
  VIEW           a view of its input (reshape, transpose, slice; split: each output), cut once
                 per binding;
  PROJECTION     tuple_get of an Element: a CALL's planned buffer, or a split's view.

What a body's schedule does otherwise than a graph's (BodySchedule): every input lives in memory
fixed for the plan's lifetime (carries and x slices in buffers the driver copies into, captured
values in the arrays bound), so views of them are cut once and each step's arguments are bound
once, not at every time step; the outputs stay in planned buffers (the driver copies them out);
no kernel writes over its input; a strided view that a generated kernel reads, or that is an
output, is copied to a contiguous buffer (a `Contiguous` value, planned like the others) by a
step of its own. A body that cannot run this way (a group with no in-loop lowering, a random
op, unbound dims) raises NotNative saying why; its scan then runs the reference loop.
"""

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from graphc.backends import loopgen
from graphc.backends import plan as planning
from graphc.backends.numba import cache, codegen
from graphc.backends.numba.loop_copies import block_copy, copy_loops
from graphc.backends.schedule import OUT_FUSABLE, Element, Lowering, PlanInput, Schedule, Storage
from graphc.fusion import fuse_body
from graphc.ir import shapes
from graphc.ops.context import RunContext

__all__ = [
    "IN_LOOP",
    "NotNative",
    "LoopCall",
    "Size",
    "Arr",
    "BodyStep",
    "Contiguous",
    "BodySchedule",
    "BodyPlan",
    "external",
]

IN_LOOP = "numba-loop"  # the lowerings key of ops that run inside a compiled loop's driver


class NotNative(Exception):
    """The body cannot run inside compiled code; the message says why."""


@dataclass
class LoopCall:
    """What an in-loop lowering gives: `call`, a statement template over {p} (the name of the
    call's argument tuple: its inputs then its outputs, in their own shapes, unless `args` builds
    another) and {f} (the name the driver imports `callee`, a (module, attribute) pair, as)."""

    call: str
    callee: tuple | None = None
    flops: float = 0.0  # for the BLAS thread count
    label: str = ""

    def args(self, inputs: list, outputs: list) -> tuple:
        return (*inputs, *outputs)

    def compile(self, args: tuple) -> None:
        """Make the callee's machine code ready for these arguments (before the driver's)."""

    @property
    def stale(self) -> bool:
        """Whether its arguments must be bound again at every call (see BodyPlan.bind)."""
        return False

    def describe(self) -> list[str]:
        return []


class Size(NamedTuple):
    """A loop size argument."""

    n: int


class Arr(NamedTuple):
    """An array argument: value `value` seen as `shape` (None: its own shape)."""

    value: object
    shape: tuple | None = None


@dataclass
class BodyStep:
    """One step of the body: a generated kernel `fn` (a cache.Kernel) with argument recipe `args` (Size/Arr), or
    a LoopCall `call` on the values `ins` writing `outs`."""

    name: str
    fn: object = None
    args: list = field(default_factory=list)
    call: LoopCall | None = None
    ins: list = field(default_factory=list)
    outs: list = field(default_factory=list)
    source: str = ""

    def statement(self, f: str, p: str) -> str:
        if self.call is not None:
            return self.call.call.format(f=f, p=p)
        return f"{f}({', '.join(f'{p}[{i}]' for i in range(len(self.args)))})"

    @property
    def callee(self):
        if self.call is not None:
            return self.call.callee
        return (f"graphc_gk_{self.fn.id}", "kernel")  # the module cache.load makes of its source


def _concrete(n, env):
    try:
        if n.is_tuple:
            return tuple(shapes.concrete(s, env) for s, _ in n.types)
        return shapes.concrete(n.shape, env)
    except KeyError as e:
        raise NotNative(
            f"{n.op} {n.label}: its shape {n.type_str} has a dimension ({e}) the inputs do not fix"
        ) from None


class Contiguous(NamedTuple):
    """The contiguous copy of value `of` (a strided view), made by a copy step of its own."""

    of: object


class BodySchedule(Schedule):
    """The schedule of a scan body at the dims `env` (see the module doc); raises NotNative.

    Adds to Schedule: `copies` (strided view -> its Contiguous copy), `copies_before` (step index
    -> the views copied just before that step), `output_copies` (the outputs copied after the
    last step) and `returned` (each output, or its copy: what the driver copies out)."""

    OUTPUT_STORAGE = Storage.STATIC  # the driver copies the outputs out of their planned buffers
    # never in place: an output sharing an input's buffer fails LLVM's run-time overlap check, and
    # the loop runs unvectorised (measured 10x slower on LSTM gates); bodies' buffers are small
    IN_PLACE = False

    def __init__(self, body, env: dict):
        for n in body.nodes:
            _concrete(n, env)  # NotNative for a dim the scan's shapes do not bind
        self.body = body
        self._probes = None
        kernels = fuse_body(body, lambda n: loopgen.reduce_spec(n) is not None)
        super().__init__(body.nodes, kernels, body.outputs, {}, env, {}, {}, IN_LOOP)

    def _source_storage(self, n) -> Storage:
        # carries and x slices live in the driver's buffers, captured values in the arrays bound
        return Storage.STATIC

    def _writes_outputs(self, n) -> bool:
        return n.is_tuple  # an in-loop call writes every output into the arguments it is given

    def dtype(self, v) -> str:
        return super().dtype(v.of if isinstance(v, Contiguous) else v)

    def _classify(self, k, probes) -> Lowering:
        self._probes = probes
        how = super()._classify(k, probes)
        n = self.nodes[k.node_ids[0]]
        if how is Lowering.REFERENCE and n.is_tuple and n.inputs and probes.is_view(n):
            self.elements[n.id] = es = [Element(n.id, i) for i in range(len(n.types))]
            for e, shape in zip(es, self.shape[n.id]):  # split: every output a view of the input
                self.shape[e], self.storage[e], self.alias[e] = shape, Storage.STATIC, n.inputs[0].id
            return Lowering.VIEW
        if how is Lowering.PROJECTION:
            probes.same_memory(n.id, Element(n.inputs[0].id, n.attrs["index"]))
        elif how is Lowering.REFERENCE and n.opdef.random:
            raise NotNative(f"{n.op} {n.label} is random (its numbers are drawn by its NumPy reference)")
        elif how in (Lowering.REFERENCE, Lowering.REFERENCE_ANCHOR):
            a = self.nodes[k.anchor] if how is Lowering.REFERENCE_ANCHOR else n
            raise NotNative(f"{a.op} {a.label} has no lowering that runs inside compiled code")
        return how

    # -- contiguous copies -----------------------------------------------------------------
    def kernel_reads(self, st) -> list:
        """The nodes step `st`'s generated code reads from outside its group (a CALL's own
        inputs are read by the call, in whatever layout)."""
        k, how = st.kernel, st.lowering
        group = [self.nodes[v] for v in k.node_ids]
        if how is Lowering.LOOP:
            return external(group, [], self.nodes)[0]
        if how is Lowering.REDUCE:
            src = self.nodes[k.anchor].inputs[0]
            body = [n for n in group if n.id != k.anchor]
            return external(body, [] if any(n is src for n in body) else [src.id], self.nodes)[0]
        if how is Lowering.CALL and k.kind == OUT_FUSABLE and len(group) > 1:
            return external([n for n in group if n.id != k.anchor], [k.anchor], self.nodes)[0][1:]
        return []

    def _strided(self, v, any_rank: bool) -> bool:
        """Whether value v is a view laid out with strides: Numba vectorises a kernel's loop only
        over contiguous arrays (measured 12x faster on LSTM gates), and a copy costs one pass."""
        probe = self._probes.array(v) if v in self.alias else None
        if probe is None:
            return False
        return not (probe.flags.c_contiguous or (probe.ndim < 2 and not any_rank) or not probe.size)

    def block_of(self, v) -> tuple | None:
        """(base, first index) when strided view v is a block of a C-contiguous buffer of the plan
        (a carry, an x slice or a planned value: not a captured array, laid out by its caller):
        its copy then reads the base at an offset, as contiguous memory (4x faster than through
        the view: measured 0.35 against 1.5 us for a 32x128 block of a 32x512 gate matrix)."""
        base = v
        while base in self.alias:
            base = self.alias[base]
        pv, pb = self._probes.array(v), self._probes.array(base)
        if pv is None or pb is None or base in {n.id for n in self.body.captured} or not pb.flags.c_contiguous:
            return None
        if pv.ndim != pb.ndim or pv.strides != pb.strides or pv.dtype != pb.dtype or not pv.size:
            return None
        offset, rem = divmod(pv.__array_interface__["data"][0] - pb.__array_interface__["data"][0], pb.itemsize)
        if rem or not 0 <= offset < pb.size:
            return None
        first = tuple(int(i) for i in np.unravel_index(offset, pb.shape))
        if any(f + n > m for f, n, m in zip(first, pv.shape, pb.shape)):
            return None
        return base, first

    def _copy(self, v, steps, nbytes):
        c = self.copies[v] = Contiguous(v)
        self.shape[c], self.storage[c] = self.shape[v], Storage.STATIC
        nbytes[c] = self.nbytes(c)
        steps.append(planning.Step([v], [c]))

    def _plan_input(self) -> PlanInput:
        pin = super()._plan_input()
        self.copies, self.copies_before, self.output_copies = {}, {}, []
        steps = []
        for i, (st, ps) in enumerate(zip(self.steps, pin.steps)):
            reads = [x.id for x in self.kernel_reads(st)]
            for v in reads:
                if v not in self.copies and self._strided(v, False):
                    self._copy(v, steps, pin.nbytes)
                    self.copies_before.setdefault(i, []).append(v)
            steps.append(planning.Step(ps.reads + [self.copies[v] for v in reads if v in self.copies], ps.writes))
        for v in self.outputs:
            if v not in self.copies and self._strided(v, True):
                self._copy(v, steps, pin.nbytes)
                self.output_copies.append(v)
        self.returned = [self.copies.get(v, v) for v in self.outputs]
        return PlanInput(steps, pin.nbytes, pin.alias, list(dict.fromkeys(self.returned)))


def external(group, extra_ids, nodes) -> tuple[list, dict]:
    """The group's inputs from outside (the nodes of extra_ids first) and its inlined 0-d constants."""
    ids = {n.id for n in group}
    ins, scalars = [nodes[v] for v in extra_ids], {}
    for n in group:
        for x in n.inputs:
            if x.id in ids or any(y is x for y in ins) or x.id in scalars:
                continue
            if x.is_const and x.shape == ():
                scalars[x.id] = codegen.literal(x.attrs["value"], x.dtype)
            else:
                ins.append(x)
    return ins, scalars


class BodyPlan:
    """The body's steps, memory plan and buffers at the dims `env` (see the module doc).

    `schedule` is its BodySchedule; values are node ids of the body graph, Elements (the outputs
    of a CALL or a split with several) and Contiguous copies. `bind(inputs)` gives every step's
    argument tuple.
    """

    def __init__(self, body, env: dict):
        self.body, self.env = body, dict(env)
        s = self.schedule = BodySchedule(body, env)
        self.nodes, self.shape, self.alias = s.nodes, s.shape, s.alias
        self.derived: list = []  # (value, view node or None, base): views and projections, in order
        self.steps: list[BodyStep] = []
        for i, st in enumerate(s.steps):
            for v in s.copies_before.get(i, ()):
                self._copy_step(v)
            self._step(st)
        for v in s.output_copies:
            self._copy_step(v)
        self.outputs = list(s.returned)  # what the driver copies out at the end of a step, each contiguous
        self.plan = s.plan
        bufs = self.plan.allocate()
        self.buffers = {}
        for v, b in self.plan.buffer_of.items():
            self.buffers[v] = bufs[b][: s.plan_input.nbytes[v]].view(s.dtype(v)).reshape(s.shape[v])
        self.consts = {v: np.array(n.attrs["value"], dtype=n.dtype) for v, n in self.nodes.items() if n.is_const}

    # -- reading ---------------------------------------------------------------------------
    def base(self, v):
        while v in self.alias:
            v = self.alias[v]
        return v

    @property
    def flops(self) -> float:
        """The largest product one step runs (for the BLAS thread count)."""
        return max([st.call.flops for st in self.steps if st.call is not None] or [0.0])

    # -- the steps -------------------------------------------------------------------------
    def _step(self, st) -> None:
        k, how = st.kernel, st.lowering
        nodes = [self.nodes[v] for v in k.node_ids]
        if how is Lowering.LOOP:
            self._loop(k, nodes, [])
        elif how is Lowering.REDUCE:
            self._reduce(k)
        elif how is Lowering.CALL:
            a = self.nodes[k.anchor] if k.kind == OUT_FUSABLE else nodes[0]
            self._call(a, self.schedule.elements.get(a.id, [a.id]))
            if k.kind == OUT_FUSABLE and len(nodes) > 1:
                self._loop(k, [n for n in nodes if n.id != a.id], [a.id])
        elif how is Lowering.VIEW:
            self.derived.append((nodes[0].id, nodes[0], nodes[0].inputs[0].id))
        else:  # PROJECTION: an Element's memory
            self.derived.append((nodes[0].id, None, self.alias[nodes[0].id]))

    def _copy_step(self, v) -> None:
        rank = len(self.shape[v])
        block = self.schedule.block_of(v)
        if block is None:
            call, src = LoopCall(copy_loops("{p}[0]", "{p}[1]", rank), label="contiguous copy"), v
        else:
            src, first = block
            call = LoopCall(block_copy("{p}[0]", "{p}[1]", first, into=False), label="contiguous copy of a block")
        self.steps.append(BodyStep(f"copy of {self.nodes[v].label}", call=call, ins=[src], outs=[Contiguous(v)]))

    def _call(self, n, outs) -> None:
        in_shapes = [self.shape[x.id] for x in n.inputs]
        out_shape = self.shape[n.id]
        call = n.opdef.lowerings[IN_LOOP](n, in_shapes, out_shape)
        if call is None:
            ins = ", ".join(x.type_str for x in n.inputs)
            raise NotNative(f"{n.op} {n.label} ({ins}) has no lowering inside compiled code at these shapes")
        ins = [x.id for x in n.inputs]
        self.steps.append(BodyStep(f"{n.op}#{n.id}", call=call, ins=ins, outs=list(outs)))

    def _args(self, loop, loop_static, ins, outs, reduced):
        """Sizes, inputs (size 1 where broadcast; contiguous copies of strided views) and outputs,
        each loop dim its own loop: the arrays are then seen through views that only insert size-1
        dims, whatever their layout."""
        masks = [loopgen.broadcast_mask(x.shape, loop_static) for x in ins]
        groups = loopgen.collapse_groups(loop, masks, reduced, False)
        sizes = [math.prod(loop[d] for d in g) for g in groups]
        args = [Size(s) for s in sizes]
        cmasks = []
        copies = self.schedule.copies
        for x, m in zip(ins, masks):
            cm = tuple(bool(g) and m[g[0]] for g in groups)
            cmasks.append(cm)
            args.append(Arr(copies.get(x.id, x.id), tuple(1 if b else s for b, s in zip(cm, sizes))))
        args += [Arr(n.id, tuple(sizes)) for n in outs]
        return args, groups, sizes, cmasks

    def _loop(self, k, body, extra_ids) -> None:
        loop_static = k.loop_shape
        loop = shapes.concrete(loop_static, self.env)
        ins, scalars = external(body, extra_ids, self.nodes)
        outs = [n for n in body if n.id in k.outputs]
        args, _, sizes, cmasks = self._args(loop, loop_static, ins, outs, [False] * len(loop))
        spec = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks)
        source = codegen.elementwise_source(spec, _label(body))
        self.steps.append(BodyStep(k.name, cache.kernel(source), args, source=source))

    def _reduce(self, k) -> None:
        anchor = self.nodes[k.anchor]
        rs = loopgen.reduce_spec(anchor)
        axes = set(rs.axes(anchor))
        body = [self.nodes[v] for v in k.node_ids if v != k.anchor]
        src = anchor.inputs[0]
        loop = shapes.concrete(src.shape, self.env)
        if math.prod(loop) == 0:
            raise NotNative(f"{anchor.op} {anchor.label} reduces an empty loop ({src.type_str} at {loop})")
        ins, scalars = external(body, [] if any(n is src for n in body) else [src.id], self.nodes)
        outs = [n for n in body if n.id in k.outputs]
        reduced = [d in axes for d in range(len(loop))]
        args, groups, sizes, cmasks = self._args(loop, src.shape, ins, outs, reduced)
        cred = tuple(bool(g) and reduced[g[0]] for g in groups)
        args.append(Arr(anchor.id, tuple(1 if r else s for r, s in zip(cred, sizes))))
        args.append(Arr(anchor.id, (math.prod(self.shape[anchor.id]),)))
        spec = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks)
        source = codegen.reduce_source(spec, anchor, rs, cred, _label([*body, anchor]))
        self.steps.append(BodyStep(k.name, cache.kernel(source), args, source=source))

    # -- binding ---------------------------------------------------------------------------
    def arrays(self, inputs: dict) -> tuple[dict, bool]:
        """(value -> array, stale) for `inputs` (body input id -> array): buffers, constants,
        views cut now. stale: a view of a captured value came out a copy (its layout is not the
        one planned for), so the binding holds only until that value changes: bind at every call."""
        vals = {**self.consts, **self.buffers, **inputs}
        captured = {n.id for n in self.body.captured}
        stale = False
        ctx = RunContext({}, {}, self.env, 0)
        for v, view, base in self.derived:
            if view is None:
                vals[v] = vals[base]
                continue
            out = view.opdef.ref(view, [vals[x.id] for x in view.inputs], ctx)
            parts = [np.asarray(o) for o in out] if view.is_tuple else [np.asarray(out)]
            if any(o.size and not np.shares_memory(o, vals[base]) for o in parts):
                if self.base(base) not in captured:
                    raise NotNative(f"{view.op} {view.label} is not a view of its input's memory at run time")
                stale = True
            if view.is_tuple:
                vals.update((Element(v, i), o) for i, o in enumerate(parts))
            else:
                vals[v] = parts[0]
        return vals, stale

    def bind(self, vals: dict) -> list[tuple]:
        """Every step's argument tuple, from the arrays of `arrays`."""
        out = []
        for st in self.steps:
            if st.call is not None:
                out.append(st.call.args([vals[v] for v in st.ins], [vals[v] for v in st.outs]))
                continue
            args = []
            for a in st.args:
                if isinstance(a, Size):
                    args.append(a.n)
                else:
                    view = vals[a.value].reshape(a.shape)
                    if view.size and not np.shares_memory(view, vals[a.value]):
                        raise AssertionError(f"{st.name}: an argument view is a copy")
                    args.append(view)
            out.append(tuple(args))
        return out

    def compile(self, bound: list[tuple]) -> None:
        """Compile (or load from the disk cache) every step's kernel for its arguments."""
        for st, args in zip(self.steps, bound):
            if st.call is not None:
                st.call.compile(args)
            else:
                cache.ensure_compiled(cache.load(st.source), args)  # for a driver Numba compiles

    def describe(self) -> list[str]:
        """One line per step (and those of nested loops, indented)."""
        lines = []
        for st in self.steps:
            lines.append(st.name if st.call is None else f"{st.name} ({st.call.label or 'in-loop call'})")
            lines += ["  " + x for x in (st.call.describe() if st.call is not None else [])]
        return lines


def _label(nodes):
    return "_".join(dict.fromkeys(n.op for n in nodes))[:80]
