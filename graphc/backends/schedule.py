"""The backend-neutral schedule of a fused graph at one concrete shape.

`Schedule` says, for the kernel groups of graphc.fusion in order and a binding of the symbolic
dims, everything a runtime needs that does not depend on how kernels are made:

- how each group runs (`Lowering`): a generated loop nest, a generated reduction, the
  backend's library call (plus a generated epilogue), a view of its input cut once, one
  element of a tuple value, or the NumPy reference at every call;
- where each value lives (`Storage`): a fed array, memory fixed for the specialisation (a
  variable, a constant, a planned buffer or a view of one), an output pool, or a fresh array
  (or tuple of arrays) made at each call; a node with several outputs whose library call
  writes them into memory it is given (`WritesOutputs`: a native scan) has each output as a
  value of its own (`Element`), planned like any other (an output pool where it is returned);
- which updates are written in place by their kernel (`safe_in_place`) and which are copied
  into the variables after the call;
- the memory plan's input (`PlanInput`: graphc.backends.plan's steps, byte sizes, views and
  the values kept to the end) and the plan itself.

A runtime (graphc.backends.numba for the CPU) binds the schedule's values to memory, makes
the kernels and runs the steps; the user-facing Executable (graphc.backends.base) checks the
feeds, copies the outputs out and writes the remaining updates.
"""

import enum
import functools
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from graphc.backends import loopgen
from graphc.backends import plan as planning
from graphc.ir import shapes
from graphc.ops.context import RunContext
from graphc.ops.registry import Kind

__all__ = [
    "Lowering",
    "Storage",
    "Element",
    "WritesOutputs",
    "KernelStep",
    "PlanInput",
    "Schedule",
    "readers_of",
    "safe_in_place",
]


class Lowering(enum.Enum):
    """How one kernel group runs."""

    LOOP = "loop"  # a generated elementwise loop nest
    REDUCE = "reduce"  # a generated reduction loop nest, its elementwise producers inside
    CALL = "call"  # the backend's library call for the op (the anchor), then a generated epilogue if any
    REFERENCE_ANCHOR = "reference-anchor"  # an output-fusable anchor with no library call: its
    # NumPy reference, then the generated epilogue
    VIEW = "view"  # a view of its input's memory (reshape, transpose), cut once per specialisation
    PROJECTION = "projection"  # one element of a tuple value (tuple_get), read at every call
    REFERENCE = "reference"  # each node's NumPy reference at every call (random ops, no lowering)

    @property
    def writes_planned(self) -> bool:
        """Whether the group writes its results into memory the schedule gives it."""
        return self in _WRITES_PLANNED


_WRITES_PLANNED = frozenset({Lowering.LOOP, Lowering.REDUCE, Lowering.CALL, Lowering.REFERENCE_ANCHOR})
# graphc.fusion's group kinds (Kernel.kind is the Kind's value)
ELEMENTWISE, REDUCTION, OUT_FUSABLE = Kind.ELEMENTWISE.value, Kind.REDUCTION.value, Kind.OUT_FUSABLE.value
# groups whose code reads and writes the same element index (in-place candidates)
_SAME_INDEX_KINDS = (ELEMENTWISE, OUT_FUSABLE)


class Storage(enum.Enum):
    """Where a value lives during a call."""

    INPUT = "input"  # the fed array
    STATIC = "static"  # fixed per specialisation: variable, constant, planned buffer, view of one
    POOL = "pool"  # an output written by a generated kernel into an OutputPool array
    FRESH = "fresh"  # made at each call: a reference op's result, a tuple value, an element of one


class Element(NamedTuple):
    """Output `index` of the node `tuple_id` (a node with several outputs), as a value of its own."""

    tuple_id: int
    index: int


class WritesOutputs:
    """A library-call lowering of a node with several outputs whose run function writes them into
    arrays it is given: `builder(node, in_shapes, out_shapes)` returns `fn` with
    `fn.into(outs, *inputs)`, or None to decline (the reference's results are then copied in).
    The schedule gives each output (an Element) a planned buffer, or an output pool where the
    call returns it, so no call allocates them."""

    def __init__(self, builder):
        self.builder = builder
        functools.update_wrapper(self, builder)

    def __call__(self, node, in_shapes, out_shapes):
        return self.builder(node, in_shapes, out_shapes)


@dataclass
class KernelStep:
    """One kernel group of the schedule: how it runs and what it writes into planned memory."""

    kernel: object  # graphc.fusion.Kernel
    lowering: Lowering
    writes: list = field(default_factory=list)  # value ids the memory plan gives buffers


@dataclass
class PlanInput:
    """What graphc.backends.plan.plan_memory reads: one Step per kernel group, the byte size of
    each planned value, views (view id -> base id) and the values that live to the end."""

    steps: list
    nbytes: dict
    alias: dict
    keep: list

    def plan(self) -> planning.MemoryPlan:
        return planning.plan_memory(self.steps, self.nbytes, self.alias, keep=self.keep)


class Schedule:
    """The schedule of `kernels` (graphc.fusion's groups of `nodes`, in order) at the dims `env`.

    outputs: the nodes the call returns; updates: variable name -> the node written into it;
    variables: variable name -> its param node; values: the variables' arrays (views of them
    are found by running the view op's reference on them); backend: the key of the backend's
    library-call lowerings (OpDef.lowerings).

    A subclass schedules a loop body the same way (numba/scan_body.py's BodySchedule): it says
    where sources and outputs live (_source_storage, OUTPUT_STORAGE), whether kernels may write
    over a dying input (IN_PLACE), which calls write their outputs into given memory
    (_writes_outputs), and may refine `_classify` and `_plan_input`.
    """

    # where the values the call returns live (a loop body's schedule keeps them in planned buffers)
    OUTPUT_STORAGE = Storage.POOL
    # whether an elementwise kernel may write over an input that dies there (plan.Step.inplace)
    IN_PLACE = True

    def __init__(self, nodes, kernels, outputs, updates: dict, env: dict, variables: dict, values, backend: str):
        self.env = dict(env)
        self.backend = backend
        self.nodes = {n.id: n for n in nodes}
        self.shape = {n.id: _concrete(n, env) for n in nodes}
        self.outputs = [n.id for n in outputs]
        out_ids = set(self.outputs)
        self.storage: dict = {n.id: self._source_storage(n) for n in nodes if n.is_source}
        self.alias: dict = {}  # view id -> the value it is a view of (a projection: its Element)
        # the outputs of each node whose call writes them into memory given to it (WritesOutputs)
        self.elements: dict[int, list[Element]] = {}
        self._returned = {Element(n.inputs[0].id, n.attrs["index"]) for n in outputs if n.opdef.takes_tuple}
        probes = _Probes(self, values)
        self.steps: list[KernelStep] = []
        for k in kernels:  # in order: a view is found only of values fixed by the groups before it
            how = self._classify(k, probes)
            self.steps.append(KernelStep(k, how))
            if how is Lowering.CALL and self._writes_outputs(self.nodes[k.node_ids[0]]):
                self._add_elements(self.nodes[k.node_ids[0]])
            elif how is Lowering.PROJECTION and self.nodes[k.node_ids[0]].inputs[0].id in self.elements:
                n = self.nodes[k.node_ids[0]]
                self.alias[n.id] = Element(n.inputs[0].id, n.attrs["index"])
            if how is Lowering.REFERENCE_ANCHOR:
                self.storage[k.anchor] = Storage.FRESH
            elif how is Lowering.CALL and k.anchor is not None:
                self.storage[k.anchor] = Storage.STATIC  # a planned buffer unless an output
            for v in k.outputs:
                fresh = how in (Lowering.REFERENCE, Lowering.PROJECTION) or self.nodes[v].is_tuple
                element = self.alias.get(v)
                if isinstance(element, Element):  # a projection shows its Element's memory, fixed or pooled
                    self.storage[v] = Storage.STATIC if self.storage[element] is Storage.STATIC else Storage.FRESH
                elif fresh or (how is Lowering.REFERENCE_ANCHOR and v == k.anchor):
                    self.storage[v] = Storage.FRESH
                elif v in out_ids and how is not Lowering.VIEW:
                    self.storage[v] = self.OUTPUT_STORAGE
                else:
                    self.storage[v] = Storage.STATIC
        self._decide_updates(updates, variables, out_ids)
        self.pool_ids = list(dict.fromkeys(v for v in self.outputs if self.storage.get(v) is Storage.POOL))
        self.pool_ids += [e for es in self.elements.values() for e in es if self.storage[e] is Storage.POOL]
        self.plan_input = self._plan_input()
        self.plan = self.plan_input.plan()

    # -- reading ---------------------------------------------------------------------------
    def node(self, v):
        return self.nodes[v]

    @property
    def inplace_ids(self) -> set:
        return set(self.inplace_updates.values())

    def dtype(self, v) -> str:
        """The dtype of value v (a node id or an Element)."""
        if isinstance(v, Element):
            return self.nodes[v.tuple_id].types[v.index][1]
        return self.nodes[v].dtype

    def nbytes(self, v) -> int:
        return math.prod(self.shape[v]) * np.dtype(self.dtype(v)).itemsize

    def _source_storage(self, n) -> Storage:
        """A source node's memory: the fed array for an input; variables and constants are fixed."""
        return Storage.INPUT if n.is_input else Storage.STATIC

    # -- nodes whose call writes their outputs into given memory ---------------------------
    def _writes_outputs(self, n) -> bool:
        return n.is_tuple and isinstance(n.opdef.lowerings.get(self.backend), WritesOutputs)

    def _add_elements(self, n) -> None:
        es = self.elements[n.id] = [Element(n.id, i) for i in range(len(n.types))]
        for e, shape in zip(es, self.shape[n.id]):
            self.shape[e] = shape
            self.storage[e] = self.OUTPUT_STORAGE if e in self._returned else Storage.STATIC

    # -- how each group runs ---------------------------------------------------------------
    def _library_call(self, node) -> bool:
        return callable(node.opdef.lowerings.get(self.backend))

    def _classify(self, k, probes) -> Lowering:
        if k.kind == ELEMENTWISE:
            return Lowering.LOOP
        if k.kind == REDUCTION and k.anchor is not None and loopgen.reduce_spec(self.nodes[k.anchor]):
            return Lowering.REDUCE
        if k.kind == OUT_FUSABLE:
            return Lowering.CALL if self._library_call(self.nodes[k.anchor]) else Lowering.REFERENCE_ANCHOR
        n = self.nodes[k.node_ids[0]]
        if n.opdef.takes_tuple and n.inputs and n.inputs[0].is_tuple and not n.is_tuple:
            return Lowering.PROJECTION
        if self._library_call(n) and not n.opdef.random:
            return Lowering.CALL  # a tuple node's call returns its tuple of arrays
        if n.is_tuple:
            return Lowering.REFERENCE
        if n.opdef.kind in (Kind.INJECTIVE, Kind.BROADCAST) and n.inputs and probes.is_view(n):
            self.alias[n.id] = n.inputs[0].id
            return Lowering.VIEW
        return Lowering.REFERENCE

    # -- updates ---------------------------------------------------------------------------
    def _decide_updates(self, updates: dict, variables: dict, out_ids: set):
        """inplace_updates: variable -> the update node whose kernel writes the variable's own
        array; copy_updates: (variable, node id) pairs copied in after the call."""
        self.inplace_updates: dict[str, int] = {}
        self.copy_updates: list[tuple[str, int]] = []
        kernels = [st.kernel for st in self.steps]
        readers = readers_of(kernels, self.alias)
        owner = {v: i for i, k in enumerate(kernels) for v in k.outputs}
        views = {st.kernel.node_ids[0] for st in self.steps if st.lowering is Lowering.VIEW}
        # values copied into variables after the call: the variable (or a view) they show must
        # still hold its old value then, as must one an output shows
        shown = {_base(v, self.alias) for v in out_ids} | {_base(u.id, self.alias) for u in updates.values()}
        for var, u in updates.items():
            i = owner.get(u.id)
            p = variables[var]
            if (
                i is not None
                and self.steps[i].lowering.writes_planned
                and u.id not in out_ids
                and u.id not in self.inplace_updates.values()
                and u.id not in views
                and safe_in_place(kernels[i], i, p, readers, self.nodes)
                and p.id not in shown
            ):
                self.inplace_updates[var] = u.id
            else:
                self.copy_updates.append((var, u.id))

    # -- the memory plan's input -----------------------------------------------------------
    def _plan_input(self) -> PlanInput:
        """Planned kernels write buffers; a reference op may return a view of its inputs (a
        projection returns an element of its tuple), so its readers keep those alive too, and
        so does its being an output or a copied update."""
        inplace_ids = self.inplace_ids
        steps, nbytes, mayalias = [], {}, {}
        for st in self.steps:
            k, how = st.kernel, st.lowering
            writes = []
            if how.writes_planned:
                writes = [v for v in k.outputs if self.storage[v] is Storage.STATIC and v not in inplace_ids]
                if k.kind == OUT_FUSABLE and k.anchor not in k.outputs and how is not Lowering.REFERENCE_ANCHOR:
                    writes = [k.anchor, *writes]
                writes += [e for v in k.outputs for e in self.elements.get(v, ()) if self.storage[e] is Storage.STATIC]
            st.writes = writes
            for v in writes:
                nbytes[v] = self.nbytes(v)
            inplace = {}
            if self.IN_PLACE and how in (Lowering.LOOP, Lowering.CALL) and k.kind in _SAME_INDEX_KINDS:
                cands = [v for v in k.inputs if v in nbytes] + ([k.anchor] if k.anchor in writes else [])
                for w in writes:
                    if w != k.anchor:
                        inplace[w] = [
                            r
                            for r in cands
                            if self.shape[r] == self.shape[w] and self.nodes[r].dtype == self.nodes[w].dtype
                        ]
            reads = list(k.inputs) + ([k.anchor] if k.anchor in writes else [])
            reads += [b for v in k.inputs for b in mayalias.get(v, ())]
            if how in (Lowering.REFERENCE, Lowering.REFERENCE_ANCHOR, Lowering.PROJECTION) or any(
                self.nodes[v].is_tuple and v not in self.elements for v in k.outputs
            ):
                for v in k.outputs:
                    mayalias[v] = set(k.inputs) | {b for x in k.inputs for b in mayalias.get(x, ())}
            steps.append(planning.Step(reads, writes, inplace))
        keep = [v for _, v in self.copy_updates] + list(dict.fromkeys(self.outputs))
        keep += sorted({b for v in keep for b in mayalias.get(v, ())} - set(keep))  # what they may view
        return PlanInput(steps, nbytes, dict(self.alias), keep)


def readers_of(kernels, alias: dict) -> dict:
    """value id -> indices of the kernels reading it; a view's readers are listed under the
    value it is a view of (they read its memory)."""
    readers: dict[int, list[int]] = {}
    for i, k in enumerate(kernels):
        for v in k.inputs:
            readers.setdefault(_base(v, alias), []).append(i)
    return readers


def safe_in_place(k, i: int, p, readers: dict, nodes: dict) -> bool:
    """Whether kernel `k` (index i) may write variable `p`'s new value over its old one: no
    later kernel reads the old value, and the kernel itself reads it only as elementwise code
    at the index it writes (its anchor, a matmul or conv, reads it whole: not safe)."""
    for j in readers.get(p.id, ()):
        if j < i:
            continue
        if j > i:
            return False
        if k.kind not in _SAME_INDEX_KINDS or p.id not in k.inputs:
            return False
        if k.anchor is not None and p in nodes[k.anchor].inputs:
            return False
    return True


class _Probes:
    """Stand-in arrays to find the ops whose reference returns a view of its first input: the
    variables' and constants' own arrays, zeros for other values the schedule fixes."""

    def __init__(self, schedule: Schedule, values):
        self.s, self.values = schedule, values
        self.arrays: dict[int, np.ndarray] = {}
        self.ctx = RunContext({}, values, schedule.env, 0)

    def _array(self, n):
        a = self.arrays.get(n.id)
        if a is None:
            if n.is_param:
                a = self.values[n.name]
            elif n.is_const:
                a = np.array(n.attrs["value"], dtype=n.dtype)
            else:
                a = np.zeros(self.s.shape[n.id], n.dtype)
            self.arrays[n.id] = a
        return a

    def array(self, v):
        """The stand-in array of value v (a node id or an Element), if one was made."""
        return self.arrays.get(v)

    def same_memory(self, v, of) -> None:
        """Value v shows the memory of value `of` (a projection of an Element that is a view)."""
        if of in self.arrays:
            self.arrays[v] = self.arrays[of]

    def is_view(self, n) -> bool:
        """Whether n's reference returns a view of its first input (for a node with several
        outputs: every output, each then an Element with a stand-in of its own)."""
        if not all(self.s.storage.get(y.id) is Storage.STATIC for y in n.inputs):
            return False
        probe = [self._array(y) for y in n.inputs]
        try:
            out = n.opdef.ref(n, probe, self.ctx)
        except Exception:
            return False
        outs = [np.asarray(o) for o in out] if n.is_tuple else [np.asarray(out)]
        types = [(shapes.concrete(s, self.s.env), d) for s, d in n.types]
        if len(outs) != len(types) or not all(
            o.shape == s and o.dtype == d and np.shares_memory(o, probe[0]) for o, (s, d) in zip(outs, types)
        ):
            return False
        if n.is_tuple:
            self.arrays.update((Element(n.id, i), o) for i, o in enumerate(outs))
        else:
            self.arrays[n.id] = outs[0]
        return True


def _concrete(n, env):
    if n.is_tuple:
        return tuple(shapes.concrete(s, env) for s, _ in n.types)
    return shapes.concrete(n.shape, env)


def _base(v, alias):
    while v in alias:
        v = alias[v]
    return v
