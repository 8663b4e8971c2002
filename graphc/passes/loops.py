"""Loop passes: scans lose the outputs nobody reads, and the work that does not depend on the carry.

A scan node (graphc/ops/control.py) has inputs `(*init, *xs, *captured)`, a body whose inputs
are the carries then the x-slices (captured values after them) and whose outputs are the new
carries then the per-step ys, and outputs `(*final_carries, *stacked_ys, *stacked_carry_ins)`
(the last group only while its `saved` attribute is true), every stacked value time-major
(index t is step t, in a reverse scan too).

  loop_prune       drop the ys nothing reads, the carries no read output depends on, and the
                   body work, xs and captured values that then feed nothing; clear `saved`
                   when nothing reads the stacked carry-ins (a scan asked for no gradient);
  loop_hoist       body work that reads no carry leaves the loop: work on captured values only
                   (`W.T`) is done once and captured; work on x-slices whose batched form is the
                   same op on the stacked value (passes/batched.py: elementwise ops, `x_t @ W`) is done
                   once on the stacked xs (`xs @ W`, one product over all T steps) and scanned;
  loop_accumulate  an accumulator carry `acc_new = acc + term` (acc read by nothing else, its
                   per-step values read by no one) becomes a stacked per-step output `term` and
                   one sum after the loop; a `term` that is a product of per-step values (the
                   weight gradient `x_t^T @ g_t`) is itself computed after the loop, batched, so
                   simplify's rule makes it one matrix product over T*batch rows.

Each pass rewrites scans in bodies too (nested scans), inner ones first.
"""

from dataclasses import dataclass

from graphc.errors import GraphStructureError
from graphc.ir.graph import Graph
from graphc.ir.node import Attrs, Node
from graphc.ir.subgraph import SubGraph
from graphc.ops.control import saves_residuals
from graphc.ops.registry import Kind
from graphc.passes.batched import BATCH_RULES, batched_form, emit_batched
from graphc.passes.bodies import as_graph, in_bodies
from graphc.passes.rewrite import Rewriter, rewrite

__all__ = ["loop_prune", "loop_hoist", "loop_accumulate", "BATCH_RULES", "batched_form", "ScanParts"]

SCAN = "scan"  # the op these passes rewrite (graphc/ops/control.py)
ADD = "add"  # the accumulation an accumulator carry does


@dataclass(frozen=True)
class ScanParts:
    """The parts of a scan node: its body and how its inputs and outputs are grouped."""

    node: Node
    body: SubGraph
    num_carry: int
    num_xs: int

    @classmethod
    def of(cls, node: Node) -> "ScanParts":
        return cls(node, node.attrs["body"], node.attrs["num_carry"], node.attrs["num_xs"])

    @property
    def num_ys(self) -> int:
        return len(self.body.outputs) - self.num_carry

    @property
    def carry_inputs(self) -> tuple:
        return self.body.inputs[: self.num_carry]

    @property
    def x_inputs(self) -> tuple:
        return self.body.inputs[self.num_carry :]

    @property
    def saved(self) -> bool:
        """Whether the scan stacks its carry-ins as outputs (its residuals)."""
        return saves_residuals(self.node.attrs)

    def residual(self, i: int) -> int | None:
        """The output index of carry i's stacked carry-ins (None: the scan does not stack them)."""
        return self.num_carry + self.num_ys + i if self.saved else None


def _scans(graph: Graph) -> bool:
    return any(n.op == SCAN for n in graph.nodes)


def _read_outputs(graph: Graph) -> dict[int, set[int]]:
    """{tuple node id: indices of its outputs that live projections read}."""
    read: dict[int, set[int]] = {}
    for n in graph.live_nodes():
        if n.opdef.takes_tuple and n.inputs:
            read.setdefault(n.inputs[0].id, set()).add(n.attrs["index"])
    return read


def _readers(body: SubGraph) -> dict[int, list[Node]]:
    readers: dict[int, list[Node]] = {n.id: [] for n in body.nodes}
    for n in body.nodes:
        for x in n.inputs:
            readers[x.id].append(n)
    return readers


def _project(rw: Rewriter, node: Node, index: int) -> Node:
    key = ("output", node.id, index)
    if key not in rw.memo:
        rw.memo[key] = rw.emit("tuple_get", [node], {"index": index})
    return rw.memo[key]


class BodyBuilder:
    """A new body made from an old one: old inputs kept, new inputs standing for old nodes, and
    the old nodes the new outputs read copied (the copy stops at nodes already standing)."""

    def __init__(self, old: SubGraph):
        self.old = old
        self.rw = Rewriter(as_graph(old))

    def keep(self, old_input: Node) -> Node:
        new = self.rw.copy(old_input, ())
        self.rw.map[old_input.id] = new
        return new

    def fresh(self, like: Node, stands_for: Node | None = None) -> Node:
        """A new input of `like`'s type (standing for old node `stands_for`, if given)."""
        name, k = f"{like.op}{like.id}", 1
        while name in self.rw.new.inputs:
            name, k = f"{like.op}{like.id}_{k}", k + 1
        new = self.rw.new.input(name, like.shape, like.dtype)
        if stands_for is not None:
            self.rw.map[stands_for.id] = new
        return new

    def value(self, old: Node) -> Node:
        """Old body node `old` in the new body, copying what it reads that is not there yet."""
        made = self.rw.map
        todo, seen, stack = [], set(), [old]
        while stack:
            n = stack.pop()
            if n.id in made or n.id in seen:
                continue
            if n.is_input:
                raise GraphStructureError(f"loop pass: body input {n.name} is read but was not kept")
            seen.add(n.id)
            todo.append(n)
            stack.extend(n.inputs)
        for n in sorted(todo, key=lambda n: n.id):  # a body's node ids are in topological order
            self.rw.current = n
            made[n.id] = self.rw.copy(n, [made[x.id] for x in n.inputs])
        return made[old.id]

    def finish(self, inputs, outputs, captured) -> SubGraph:
        graph = self.rw.new
        graph.inputs = {n.name: n for n in [*inputs, *captured]}
        graph.sealed = True
        return SubGraph(graph, inputs, outputs, captured)


def _live_ids(outputs, stop=frozenset()) -> set[int]:
    """Ids of the nodes `outputs` read, not looking past the nodes whose ids are in `stop`."""
    seen, stack = set(), list(outputs)
    while stack:
        n = stack.pop()
        if n.id not in seen:
            seen.add(n.id)
            if n.id not in stop:
                stack.extend(n.inputs)
    return seen


def _new_scan(rw: Rewriter, s: ScanParts, carries, inputs, xs, caps, outputs, saved: bool | None = None) -> Node:
    """A scan like `s`, whose body has the carries `carries` (old indices; `inputs` are the old
    scan's rewritten inputs), the xs and captured values `xs` and `caps` (triples: old body input
    or None, outer value, old body node a new input stands for or None) and the outputs
    `outputs` (old body nodes: new carries, then ys), stacking its carry-ins if `saved` (None:
    as `s` does). Body inputs that the outputs no longer read are dropped (xs and captured
    values; which carries stay is the caller's choice)."""
    live = _live_ids(outputs, {stands.id for _, _, stands in [*xs, *caps] if stands is not None})

    def wanted(pairs):
        return [p for p in pairs if (p[0] if p[2] is None else p[2]).id in live]

    xs, caps = wanted(xs), wanted(caps)
    b = BodyBuilder(s.body)
    c_in = [b.keep(s.carry_inputs[i]) for i in carries]
    x_in = [b.keep(old) if stands is None else b.fresh(stands, stands) for old, _, stands in xs]
    k_in = [b.keep(old) if stands is None else b.fresh(stands, stands) for old, _, stands in caps]
    outs = [b.value(o) for o in outputs]
    body = b.finish([*c_in, *x_in], outs, k_in)
    saved = s.saved if saved is None else saved
    attrs = Attrs({**s.node.attrs, "body": body, "num_carry": len(carries), "num_xs": len(xs), "saved": saved})
    args = [*(inputs[i] for i in carries), *(v for _, v, _ in xs), *(v for _, v, _ in caps)]
    return rw.emit(SCAN, args, attrs)


# -- loop_prune ------------------------------------------------------------------------------------------
def _carry_deps(s: ScanParts) -> dict[int, set[int]]:
    """{body node id: the carries (indices) it depends on}."""
    deps = {n.id: {i} for i, n in enumerate(s.carry_inputs)}
    for n in s.body.nodes:
        if n.id not in deps:
            deps[n.id] = set().union(*(deps[x.id] for x in n.inputs)) if n.inputs else set()
    return deps


def _prune_rule(read):
    def rule(rw: Rewriter, node: Node, inputs):
        if node.op != SCAN:
            return None
        s = ScanParts.of(node)
        nc, ny, outs = s.num_carry, s.num_ys, s.body.outputs
        used = read.get(node.id, set())
        ys = [j for j in range(ny) if nc + j in used]
        stacked = {i for i in range(nc) if s.saved and s.residual(i) in used}  # carry-ins read
        carries = {i for i in range(nc) if i in used} | stacked
        deps = _carry_deps(s)
        for j in ys:
            carries |= deps[outs[nc + j].id]
        grown = True
        while grown:
            more = set().union(*(deps[outs[i].id] for i in carries)) if carries else set()
            grown, carries = not more <= carries, carries | more
        carries = sorted(carries)
        saved = bool(stacked)
        if len(carries) == nc and len(ys) == ny and saved == s.saved and _all_inputs_read(s):
            return None
        nx = s.num_xs
        xs = [(s.x_inputs[k], inputs[nc + k], None) for k in range(nx)]
        caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
        ys_out = [outs[nc + j] for j in ys]
        new = _new_scan(rw, s, carries, inputs, xs, caps, [*(outs[i] for i in carries), *ys_out], saved)
        nc2, ny2 = len(carries), len(ys)
        outputs = [None] * len(node.types)
        for pos, i in enumerate(carries):
            outputs[i] = _project(rw, new, pos) if i in used else None
            if i in stacked:
                outputs[s.residual(i)] = _project(rw, new, nc2 + ny2 + pos)
        for pos, j in enumerate(ys):
            outputs[nc + j] = _project(rw, new, nc2 + pos)
        rw.replace_outputs(node, outputs)
        return new

    return rule


def _all_inputs_read(s: ScanParts) -> bool:
    live = _live_ids(s.body.outputs)
    return all(n.id in live for n in (*s.x_inputs, *s.body.captured))


def _prune(graph: Graph) -> Graph:
    if not _scans(graph):
        return rewrite(graph)  # a pass always returns a new graph
    return rewrite(graph, _prune_rule(_read_outputs(graph)), graph.live_nodes())


# -- loop_hoist ------------------------------------------------------------------------------------------
_LOOP, _STACKED, _INVARIANT = "loop", "stacked", "invariant"


def _classify(s: ScanParts) -> tuple[dict[int, str], dict[int, tuple]]:
    """Where each body node's work belongs ({id: loop/stacked/invariant}) and the batched forms of
    the stacked ones."""
    state = {n.id: _LOOP for n in s.carry_inputs}
    state |= {n.id: _STACKED for n in s.x_inputs}
    state |= {n.id: _INVARIANT for n in s.body.captured}
    forms = {}
    for n in s.body.nodes:
        if n.id in state:
            continue
        ins = [state[x.id] for x in n.inputs]
        if n.is_const:
            state[n.id] = _INVARIANT
        elif n.is_source or not n.opdef.pure or n.is_tuple or n.opdef.takes_tuple or _LOOP in ins:
            state[n.id] = _LOOP  # random ops draw anew at every step
        elif all(v == _INVARIANT for v in ins):
            state[n.id] = _INVARIANT
        else:
            form = batched_form(n, [v == _STACKED for v in ins])
            state[n.id] = _LOOP if form is None else _STACKED
            if form is not None:
                forms[n.id] = form
    return state, forms


def _outer_value(rw: Rewriter, x: Node, outer: dict) -> Node:
    if x.id not in outer:  # a constant of the body
        outer[x.id] = rw.const(x.attrs["value"], x.dtype, like=rw.current)
    return outer[x.id]


def _hoist_rule(rw: Rewriter, node: Node, inputs):
    if node.op != SCAN:
        return None
    s = ScanParts.of(node)
    state, forms = _classify(s)
    moved = [n for n in s.body.nodes if not n.is_source and state[n.id] != _LOOP]
    if not moved:
        return None
    nc, nx = s.num_carry, s.num_xs
    outer = {x.id: inputs[nc + k] for k, x in enumerate(s.x_inputs)}
    outer |= {x.id: inputs[nc + nx + k] for k, x in enumerate(s.body.captured)}
    length = node.attrs["length"]
    for n in moved:
        args = [_outer_value(rw, x, outer) for x in n.inputs]
        key = ("hoisted", n.op, tuple(a.id for a in args), n.attrs.key())
        if key not in rw.memo:  # the forward and backward scans move the same work out: done once
            if state[n.id] == _INVARIANT:
                rw.memo[key] = rw.emit(n.op, args, n.attrs, like=rw.current)
            else:
                rw.memo[key] = emit_batched(rw, n, forms[n.id], args, length, rw.current)
        outer[n.id] = rw.memo[key]
    readers = _readers(s.body)
    outs = {o.id for o in s.body.outputs}
    boundary = [n for n in moved if n.id in outs or any(state[r.id] == _LOOP for r in readers[n.id])]
    xs = [(x, inputs[nc + k], None) for k, x in enumerate(s.x_inputs)]
    xs += [(None, outer[n.id], n) for n in boundary if state[n.id] == _STACKED]
    caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
    caps += [(None, outer[n.id], n) for n in boundary if state[n.id] == _INVARIANT]
    return _new_scan(rw, s, range(nc), inputs, xs, caps, list(s.body.outputs))


def _hoist(graph: Graph) -> Graph:
    return rewrite(graph, _hoist_rule if _scans(graph) else None)


# -- loop_accumulate ---------------------------------------------------------------------------------------
@dataclass
class _Recipe:
    """How a sunk value is computed after the loop: `node`'s batched `form` on its parts (recipes),
    or a leaf: body input or per-step output `node` (form None)."""

    node: Node
    form: tuple | None = None
    parts: tuple = ()


def _accumulators(s: ScanParts, used: set[int], readers) -> list[tuple[int, Node]]:
    """(carry index, term) of each carry updated as `acc + term` and read by nothing else, with a
    term that varies from step to step (a loop-invariant one stacks to no [T, ...] output)."""
    found = []
    outs = s.body.outputs
    varying = _varying(s)
    for k, (p, o) in enumerate(zip(s.carry_inputs, outs)):
        if s.residual(k) in used or o.op != ADD or o is p or readers[o.id] or outs.count(o) != 1:
            continue
        if p in outs or [r.id for r in readers[p.id]] != [o.id]:
            continue
        a, b = o.inputs
        term = b if a is p else a
        if term is p or term.dtype != o.dtype or term.id not in varying:
            continue
        found.append((k, term))
    return found


def _varying(s: ScanParts) -> set[int]:
    """Ids of the body nodes that depend on a carry or an x-slice (the others are loop-invariant)."""
    ids = {n.id for n in s.body.inputs}
    for n in s.body.nodes:
        if any(x.id in ids for x in n.inputs):
            ids.add(n.id)
    return ids


def _sink(s: ScanParts, term: Node, readers, accumulator_adds: set[int]) -> _Recipe:
    """A recipe computing `term` for every step after the loop: a product (an output-fusable op with
    a batched form) of per-step values, each the value itself or a rearrangement of one (an
    injective op with a batched form) read by nothing else, and of captured values or constants;
    else `term` itself, a per-step output."""
    varying = _varying(s)
    outs = s.body.outputs

    def sole_use(n, user):
        return n not in outs and all(r is user or r.id in accumulator_adds for r in readers[n.id])

    def leaf_ok(x):  # after the loop, a value is a stacked per-step one, a captured one or a constant
        return x.id in varying or x in s.body.captured or x.is_const

    if term.opdef.kind is not Kind.OUT_FUSABLE or term.is_input or not sole_use(term, None):
        return _Recipe(term)
    form = batched_form(term, [x.id in varying for x in term.inputs])
    if form is None or not all(leaf_ok(x) for x in term.inputs):
        return _Recipe(term)
    parts = []
    for x in term.inputs:
        part = _Recipe(x)
        if x.id in varying and not x.is_input and x.opdef.kind is Kind.INJECTIVE and sole_use(x, term):
            sub = batched_form(x, [v.id in varying for v in x.inputs])
            if sub is not None and all(leaf_ok(v) for v in x.inputs):
                part = _Recipe(x, sub, tuple(_Recipe(v) for v in x.inputs))
        parts.append(part)
    return _Recipe(term, form, tuple(parts))


def _leaves(recipe: _Recipe) -> list[Node]:
    if recipe.form is None:
        return [recipe.node]
    return [leaf for p in recipe.parts for leaf in _leaves(p)]


def _accumulate_rule(read):
    def rule(rw: Rewriter, node: Node, inputs):
        if node.op != SCAN:
            return None
        s = ScanParts.of(node)
        readers = _readers(s.body)
        accs = _accumulators(s, read.get(node.id, set()), readers)
        if not accs:
            return None
        nc, nx, ny, outs = s.num_carry, s.num_xs, s.num_ys, s.body.outputs
        adds = {outs[k].id for k, _ in accs}
        recipes = [_sink(s, term, readers, adds) for _, term in accs]
        carries = [i for i in range(nc) if i not in {k for k, _ in accs}]
        # per-step values the recipes read: body inputs come from outside, the rest become ys
        x_of = {x.id: k for k, x in enumerate(s.x_inputs)}
        c_of = {x.id: i for i, x in enumerate(s.carry_inputs)}
        k_of = {x.id: k for k, x in enumerate(s.body.captured)}
        new_ys = []
        for r in recipes:
            for leaf in _leaves(r):
                if leaf.id not in x_of and leaf.id not in k_of and leaf.id not in c_of and not leaf.is_const:
                    if leaf not in new_ys:
                        new_ys.append(leaf)
        if any(leaf.id in c_of and c_of[leaf.id] not in carries for r in recipes for leaf in _leaves(r)):
            return None  # a removed carry's per-step value: not available after the loop
        xs = [(x, inputs[nc + k], None) for k, x in enumerate(s.x_inputs)]
        caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
        new_outs = [*(outs[i] for i in carries), *outs[nc:], *new_ys]
        # a recipe reading a carry reads its stacked carry-ins: the new scan stacks them
        saved = s.saved or any(leaf.id in c_of for r in recipes for leaf in _leaves(r))
        new = _new_scan(rw, s, carries, inputs, xs, caps, new_outs, saved)
        nc2, ny2 = len(carries), ny + len(new_ys)
        length = node.attrs["length"]

        def after(r: _Recipe) -> Node:
            n = r.node
            if r.form is not None:
                return emit_batched(rw, n, r.form, [after(p) for p in r.parts], length, n)
            if n.id in x_of:
                return inputs[nc + x_of[n.id]]  # time-major, like the stacked ys
            if n.id in k_of:
                return inputs[nc + nx + k_of[n.id]]
            if n.id in c_of:
                return _project(rw, new, nc2 + ny2 + carries.index(c_of[n.id]))
            if n.is_const:
                return rw.const(n.attrs["value"], n.dtype, like=n)
            return _project(rw, new, nc2 + ny + new_ys.index(n))

        used = read.get(node.id, set())
        outputs = [None] * len(node.types)
        for pos, i in enumerate(carries):
            outputs[i] = _project(rw, new, pos) if i in used else None
            if s.saved and s.residual(i) in used:
                outputs[s.residual(i)] = _project(rw, new, nc2 + ny2 + pos)
        for j in range(ny):
            outputs[nc + j] = _project(rw, new, nc2 + j) if nc + j in used else None
        for (k, _), r in zip(accs, recipes):
            if k in used:
                stacked = after(r)
                total = rw.emit("sum", [stacked], {"axes": (0,), "keepdims": False}, like=outs[k])
                outputs[k] = rw.emit(ADD, [inputs[k], total], like=outs[k])
        rw.replace_outputs(node, outputs)
        return new

    return rule


def _accumulate(graph: Graph) -> Graph:
    if not _scans(graph):
        return rewrite(graph)
    return rewrite(graph, _accumulate_rule(_read_outputs(graph)), graph.live_nodes())


loop_prune = in_bodies(_prune)
loop_prune.__doc__ = """Scans lose the ys nothing reads, the carries no read output depends on, and the body
work, xs and captured values that then feed nothing (in bodies too)."""
loop_hoist = in_bodies(_hoist)
loop_hoist.__doc__ = """Body work that reads no carry leaves its scan: captured-only work is done once before
it, x-slice work with a batched form once on the stacked xs (in bodies too)."""
loop_accumulate = in_bodies(_accumulate)
loop_accumulate.__doc__ = """Accumulator carries (`acc + term`) become stacked per-step terms summed once after
the scan; a product term is itself computed after it, batched (in bodies too)."""
