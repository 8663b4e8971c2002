"""A scan body planned for a native loop: its kernels, its per-step memory, each step's arguments.

`BodyPlan(body, env)` fuses the body (graphc.fusion.fuse_body), decides how each kernel group
runs inside compiled code, plans the per-step temporaries once (graphc.backends.plan) and
generates the groups' loop kernels with the Numba codegen:

  LOOP / REDUCE  generated elementwise / reduction kernels (graphc.backends.loopgen, codegen.py),
                 never parallel (a prange in every step would pay its thread start-up T times);
  CALL           the op's in-loop lowering (the `lowering` decorator's key IN_LOOP): a statement
                 the driver runs on the call's arguments (matmul: np.dot, which Numba lowers to
                 BLAS; a nested scan: its own driver), then the group's generated epilogue;
  VIEW           a view of its input (reshape, transpose, slice), cut once per binding;
  PROJECTION     tuple_get of a value a CALL writes: that output's buffer.

Every value of a step lives in memory fixed for the plan's lifetime (carries and x slices in
buffers the driver copies into, captured values in the arrays bound, temporaries in planned
buffers), so each step's arguments are bound once, not at every time step. A body that cannot
run this way (an op with no in-loop lowering, a random op, unbound dims) raises NotNative
saying why; its scan then runs the reference loop.
"""

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from graphc.backends import loopgen
from graphc.backends import plan as planning
from graphc.backends.numba import cache, codegen
from graphc.fusion import fuse_body
from graphc.ir import shapes
from graphc.ops.context import RunContext
from graphc.ops.registry import Kind

__all__ = ["IN_LOOP", "NotNative", "LoopCall", "Size", "Arr", "BodyStep", "BodyPlan", "copy_loops", "fill_loops"]

IN_LOOP = "numba-loop"  # the lowerings key of ops that run inside a compiled loop's driver
ELEMENTWISE, REDUCTION, OUT_FUSABLE = Kind.ELEMENTWISE.value, Kind.REDUCTION.value, Kind.OUT_FUSABLE.value


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


def copy_loops(src: str, dst: str, rank: int, index=None) -> str:
    """Source of nested loops over src's dims writing dst[index(i0, i1, ...)] = src[i0, i1, ...]
    (index: the identity by default). Explicit loops compile in a fraction of the time Numba
    takes for a slice assignment between arrays, and vectorise as well."""
    idx = [f"i{d}" for d in range(rank)]
    at = ", ".join(index(idx) if index else idx) or "()"
    lines = ["    " * d + f"for i{d} in range({src}.shape[{d}]):" for d in range(rank)]
    return "\n".join([*lines, "    " * rank + f"{dst}[{at}] = {src}[{', '.join(idx) or '()'}]"])


def fill_loops(dst: str, rank: int, value: str) -> str:
    """Source of nested loops setting every element of dst to value."""
    idx = ", ".join(f"i{d}" for d in range(rank)) or "()"
    lines = ["    " * d + f"for i{d} in range({dst}.shape[{d}]):" for d in range(rank)]
    return "\n".join([*lines, "    " * rank + f"{dst}[{idx}] = {value}"])


@dataclass
class BodyStep:
    """One step of the body: a generated kernel `fn` with argument recipe `args` (Size/Arr), or
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
        return (self.fn.py_func.__module__, "kernel")


def _concrete(n, env):
    try:
        if n.is_tuple:
            return tuple(shapes.concrete(s, env) for s, _ in n.types)
        return shapes.concrete(n.shape, env)
    except KeyError as e:
        raise NotNative(
            f"{n.op} {n.label}: its shape {n.type_str} has a dimension ({e}) the inputs do not fix"
        ) from None


class BodyPlan:
    """The body's steps, memory plan and buffers at the dims `env` (see the module doc).

    Values are node ids of the body graph, and (tuple node id, index) for each output of a
    CALL with several outputs. `bind(inputs)` gives every step's argument tuple.
    """

    def __init__(self, body, env: dict):
        self.body, self.env = body, dict(env)
        self.nodes = {n.id: n for n in body.nodes}
        self.shape = {v: _concrete(n, env) for v, n in self.nodes.items()}
        self.kernels = fuse_body(body, lambda n: loopgen.reduce_spec(n) is not None)
        self.inputs = {n.id for n in body.all_inputs}
        self.alias: dict = {}  # view/projection -> the value whose memory it shows
        self.derived: list = []  # (value, view node or None, base): views and projections, in order
        self.elements: dict = {}  # values that are not nodes: (tuple id, index), contiguous copies -> type
        self.steps: list[BodyStep] = []
        self.nbytes: dict = {}
        self._probe: dict = {}
        self._plan_steps: list[planning.Step] = []  # in the order of self.steps
        self._copies: dict = {}  # strided view -> its contiguous copy
        for k in self.kernels:
            self._plan_kernel(k)
        # what the driver copies out at the end of a step, each contiguous (copied flat)
        self.outputs = [self._contiguous(o.id, any_rank=True) for o in body.outputs]
        keep = list(self.outputs)
        self.plan = planning.plan_memory(self._plan_steps, self.nbytes, self.alias, keep=keep)
        bufs = self.plan.allocate()
        self.buffers = {}
        for v, b in self.plan.buffer_of.items():
            shp, dt = self._type(v)
            self.buffers[v] = bufs[b][: self.nbytes[v]].view(dt).reshape(shp)
        self.consts = {v: np.array(n.attrs["value"], dtype=n.dtype) for v, n in self.nodes.items() if n.is_const}

    # -- reading ---------------------------------------------------------------------------
    def _type(self, v):
        if v in self.elements:
            return self.elements[v]
        return self.shape[v], self.nodes[v].dtype

    def base(self, v):
        while v in self.alias:
            v = self.alias[v]
        return v

    @property
    def flops(self) -> float:
        """The largest product one step runs (for the BLAS thread count)."""
        return max([st.call.flops for st in self.steps if st.call is not None] or [0.0])

    # -- planning --------------------------------------------------------------------------
    def _plan_kernel(self, k) -> None:
        nodes = [self.nodes[v] for v in k.node_ids]
        if k.kind == ELEMENTWISE:
            return self._loop(k, nodes, [])
        if k.kind == REDUCTION and k.anchor is not None and loopgen.reduce_spec(self.nodes[k.anchor]):
            return self._reduce(k)
        if k.kind == OUT_FUSABLE:
            a = self.nodes[k.anchor]
            self._call(a, [a.id])
            if len(nodes) > 1:
                self._loop(k, [n for n in nodes if n.id != a.id], [a.id])
            return
        (n,) = nodes
        if n.opdef.random:
            raise NotNative(f"{n.op} {n.label} is random (its numbers are drawn by its NumPy reference)")
        if n.opdef.takes_tuple and n.inputs and (n.inputs[0].id, n.attrs["index"]) in self.elements:
            key = (n.inputs[0].id, n.attrs["index"])
            self._probe[n.id] = self._probe_array(key)
            self._derive(n.id, None, key)
            return
        if callable(n.opdef.lowerings.get(IN_LOOP)):
            outs = [(n.id, i) for i in range(len(n.types))] if n.is_tuple else [n.id]
            return self._call(n, outs)
        if (n.is_tuple or n.opdef.kind in (Kind.INJECTIVE, Kind.BROADCAST)) and n.inputs and self._is_view(n):
            if n.is_tuple:  # split: every output a view of the input
                for i, (s, d) in enumerate(n.types):
                    self.elements[(n.id, i)] = (shapes.concrete(s, self.env), d)
                    self.alias[(n.id, i)] = n.inputs[0].id
            self._derive(n.id, n, n.inputs[0].id)
            return
        raise NotNative(f"{n.op} {n.label} has no lowering that runs inside compiled code")

    def _derive(self, v, view, base):
        self.alias[v] = base
        self.derived.append((v, view, base))

    def _planned(self, v):
        shp, dt = self._type(v)
        self.nbytes[v] = math.prod(shp) * np.dtype(dt).itemsize

    def _call(self, n, outs) -> None:
        in_shapes = [self.shape[x.id] for x in n.inputs]
        out_shape = self.shape[n.id]
        call = n.opdef.lowerings[IN_LOOP](n, in_shapes, out_shape)
        if call is None:
            ins = ", ".join(x.type_str for x in n.inputs)
            raise NotNative(f"{n.op} {n.label} ({ins}) has no lowering inside compiled code at these shapes")
        if n.is_tuple:
            for i, (s, d) in enumerate(n.types):
                self.elements[(n.id, i)] = (shapes.concrete(s, self.env), d)
        for v in outs:
            self._planned(v)
        ins = [x.id for x in n.inputs]
        self.steps.append(BodyStep(f"{n.op}#{n.id}", call=call, ins=ins, outs=list(outs)))
        self._plan_steps.append(planning.Step(ins, list(outs)))

    def _external(self, body, extra_ids):
        """The group's inputs from outside (extra first) and its inlined 0-d constants."""
        ids = {n.id for n in body}
        ins, scalars = [self.nodes[v] for v in extra_ids], {}
        for n in body:
            for x in n.inputs:
                if x.id in ids or any(y is x for y in ins) or x.id in scalars:
                    continue
                if x.is_const and x.shape == ():
                    scalars[x.id] = codegen.literal(x.attrs["value"], x.dtype)
                else:
                    ins.append(x)
        return ins, scalars

    def _args(self, loop, loop_static, ins, outs, reduced):
        """Sizes, inputs (size 1 where broadcast) and outputs, each loop dim its own loop: the
        arrays are then seen through views that only insert size-1 dims, whatever their layout."""
        masks = [loopgen.broadcast_mask(x.shape, loop_static) for x in ins]
        groups = loopgen.collapse_groups(loop, masks, reduced, False)
        sizes = [math.prod(loop[d] for d in g) for g in groups]
        args = [Size(s) for s in sizes]
        cmasks = []
        for x, m in zip(ins, masks):
            cm = tuple(bool(g) and m[g[0]] for g in groups)
            cmasks.append(cm)
            args.append(Arr(self._contiguous(x.id), tuple(1 if b else s for b, s in zip(cm, sizes))))
        args += [Arr(n.id, tuple(sizes)) for n in outs]
        return args, groups, sizes, cmasks

    def _loop(self, k, body, extra_ids) -> None:
        loop_static = k.loop_shape
        loop = shapes.concrete(loop_static, self.env)
        ins, scalars = self._external(body, extra_ids)
        outs = [n for n in body if n.id in k.outputs]
        args, _, sizes, cmasks = self._args(loop, loop_static, ins, outs, [False] * len(loop))
        spec = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks, False)
        source = codegen.elementwise_source(spec, _label(body))
        self.steps.append(BodyStep(k.name, cache.load(source), args, source=source))
        for n in outs:
            self._planned(n.id)
        # never in place: an output sharing an input's buffer fails LLVM's run-time overlap check,
        # and the loop runs unvectorised (measured 10x slower on LSTM gates); bodies' buffers are small
        self._plan_steps.append(planning.Step([self._read(x.id) for x in ins], [n.id for n in outs]))

    def _reduce(self, k) -> None:
        anchor = self.nodes[k.anchor]
        rs = loopgen.reduce_spec(anchor)
        axes = set(rs.axes(anchor))
        body = [self.nodes[v] for v in k.node_ids if v != k.anchor]
        src = anchor.inputs[0]
        loop = shapes.concrete(src.shape, self.env)
        if math.prod(loop) == 0:
            raise NotNative(f"{anchor.op} {anchor.label} reduces an empty loop ({src.type_str} at {loop})")
        ins, scalars = self._external(body, [] if any(n is src for n in body) else [src.id])
        outs = [n for n in body if n.id in k.outputs]
        reduced = [d in axes for d in range(len(loop))]
        args, groups, sizes, cmasks = self._args(loop, src.shape, ins, outs, reduced)
        cred = tuple(bool(g) and reduced[g[0]] for g in groups)
        args.append(Arr(anchor.id, tuple(1 if r else s for r, s in zip(cred, sizes))))
        args.append(Arr(anchor.id, (math.prod(self.shape[anchor.id]),)))
        spec = loopgen.LoopSpec(body, ins, outs, scalars, len(sizes), cmasks, False)
        source = codegen.reduce_source(spec, anchor, rs, cred, _label([*body, anchor]))
        self.steps.append(BodyStep(k.name, cache.load(source), args, source=source))
        writes = [n.id for n in outs] + [anchor.id]
        for v in writes:
            self._planned(v)
        self._plan_steps.append(planning.Step([self._read(x.id) for x in ins], writes))

    def _read(self, v):
        """The value a generated kernel reads for v: its contiguous copy if it has one."""
        return self._copies.get(v, v)

    def _contiguous(self, v, any_rank: bool = False):
        """v, or for a strided view (a split part, a column slice) a contiguous copy made by a step
        of its own: Numba vectorises a kernel's loop only over contiguous arrays (measured 12x
        faster on LSTM gates), and the copy costs one pass."""
        if v in self._copies or v not in self.alias:
            return self._read(v)
        probe = self._probe_array(v)
        if probe.flags.c_contiguous or (probe.ndim < 2 and not any_rank) or not probe.size:
            return v
        copy = self._copies[v] = ("contiguous", v)
        self.elements[copy] = (self.shape[v], self.nodes[v].dtype)
        self._planned(copy)
        step = LoopCall(copy_loops("{p}[0]", "{p}[1]", probe.ndim), label="contiguous copy")
        self.steps.append(BodyStep(f"copy of {self.nodes[v].label}", call=step, ins=[v], outs=[copy]))
        self._plan_steps.append(planning.Step([v], [copy]))
        return copy

    # -- views -----------------------------------------------------------------------------
    def _probe_array(self, v):
        a = self._probe.get(v)
        if a is None and v not in self.nodes:  # an output of a call with several outputs
            shp, dt = self.elements[v]
            a = self._probe[v] = np.zeros(shp, dt)
        elif a is None:
            n = self.nodes[v]
            a = np.array(n.attrs["value"], n.dtype) if n.is_const else np.zeros(self.shape[v], n.dtype)
            self._probe[v] = a
        return a

    def _is_view(self, n) -> bool:
        """Whether n's reference returns a view of its first input (tried on stand-in arrays
        laid out as the real ones are: contiguous buffers, views of them)."""
        probe = [self._probe_array(x.id) for x in n.inputs]
        try:
            out = n.opdef.ref(n, probe, RunContext({}, {}, self.env, 0))
        except Exception:
            return False
        if n.is_tuple:
            outs = [np.asarray(o) for o in out]
            if all(_views(o, (s, d), probe[0]) for o, s, d in zip(outs, self.shape[n.id], (d for _, d in n.types))):
                self._probe.update(((n.id, i), o) for i, o in enumerate(outs))
                return True
            return False
        out = np.asarray(out)
        if _views(out, (self.shape[n.id], n.dtype), probe[0]):
            self._probe[n.id] = out
            return True
        return False

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
                vals.update(((v, i), o) for i, o in enumerate(parts))
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
                cache.ensure_compiled(st.fn, args)

    def describe(self) -> list[str]:
        """One line per step (and those of nested loops, indented)."""
        lines = []
        for st in self.steps:
            lines.append(st.name if st.call is None else f"{st.name} ({st.call.label or 'in-loop call'})")
            lines += ["  " + x for x in (st.call.describe() if st.call is not None else [])]
        return lines


def _views(out, typ, base) -> bool:
    """Whether `out` has type `typ` (shape, dtype) and shows `base`'s memory."""
    return out.shape == tuple(typ[0]) and out.dtype == typ[1] and np.shares_memory(out, base)


def _label(nodes):
    return "_".join(dict.fromkeys(n.op for n in nodes))[:80]
