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

from graphc.ir.graph import Graph
from graphc.ir.node import Node
from graphc.ops.registry import Kind
from graphc.passes.batched import BATCH_RULES, batched_form, emit_batched
from graphc.passes.bodies import in_bodies
from graphc.passes.restack import restack_reads
from graphc.passes.rewrite import Rewriter, rewrite
from graphc.passes.scan_parts import (
    SCAN,
    ScanParts,
    body_readers,
    has_scans,
    live_ids,
    new_scan,
    project,
    read_outputs,
)

__all__ = ["loop_prune", "loop_hoist", "loop_accumulate", "BATCH_RULES", "batched_form", "ScanParts"]

ADD = "add"  # the accumulation an accumulator carry does


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
        first = {}  # a body value stacked twice (two ys of one node) is stacked once
        for j in ys:
            first.setdefault(outs[nc + j].id, j)
        kept = [j for j in ys if first[outs[nc + j].id] == j]
        if len(carries) == nc and len(kept) == ny and saved == s.saved and _all_inputs_read(s):
            return None
        nx = s.num_xs
        xs = [(s.x_inputs[k], inputs[nc + k], None) for k in range(nx)]
        caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
        ys_out = [outs[nc + j] for j in kept]
        new = new_scan(rw, s, carries, inputs, xs, caps, [*(outs[i] for i in carries), *ys_out], saved)
        nc2, ny2 = len(carries), len(kept)
        outputs = [None] * len(node.types)
        for pos, i in enumerate(carries):
            outputs[i] = project(rw, new, pos) if i in used else None
            if i in stacked:
                outputs[s.residual(i)] = project(rw, new, nc2 + ny2 + pos)
        for j in ys:
            outputs[nc + j] = project(rw, new, nc2 + kept.index(first[outs[nc + j].id]))
        rw.replace_outputs(node, outputs)
        return new

    return rule


def _all_inputs_read(s: ScanParts) -> bool:
    live = live_ids(s.body.outputs)
    return all(n.id in live for n in (*s.x_inputs, *s.body.captured))


def _prune(graph: Graph) -> Graph:
    if not has_scans(graph):
        return rewrite(graph)  # a pass always returns a new graph
    return rewrite(graph, _prune_rule(read_outputs(graph)), graph.live_nodes())


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
    readers = body_readers(s.body)
    outs = {o.id for o in s.body.outputs}
    boundary = [n for n in moved if n.id in outs or any(state[r.id] == _LOOP for r in readers[n.id])]
    xs = [(x, inputs[nc + k], None) for k, x in enumerate(s.x_inputs)]
    xs += [(None, outer[n.id], n) for n in boundary if state[n.id] == _STACKED]
    caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
    caps += [(None, outer[n.id], n) for n in boundary if state[n.id] == _INVARIANT]
    return new_scan(rw, s, range(nc), inputs, xs, caps, list(s.body.outputs))


def _hoist(graph: Graph) -> Graph:
    if not has_scans(graph):
        return rewrite(graph)
    out, read = restack_reads(rewrite(graph, _hoist_rule))
    # a body reading another scan's values can leave that scan's old ys unread (the reverse body
    # reads the forward's gate activations, not the pre-activation it recomputed them from)
    return _prune(out) if read else out


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
        readers = body_readers(s.body)
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
        y_of = {}  # body node -> the output index it is stacked at (the ys it has, then new ones)
        for j, y in enumerate(outs[nc:]):
            y_of.setdefault(y.id, j)
        new_ys = []
        for r in recipes:
            for leaf in _leaves(r):
                if leaf.id not in x_of and leaf.id not in k_of and leaf.id not in c_of and not leaf.is_const:
                    if leaf.id not in y_of:
                        y_of[leaf.id] = ny + len(new_ys)
                        new_ys.append(leaf)
        if any(leaf.id in c_of and c_of[leaf.id] not in carries for r in recipes for leaf in _leaves(r)):
            return None  # a removed carry's per-step value: not available after the loop
        xs = [(x, inputs[nc + k], None) for k, x in enumerate(s.x_inputs)]
        caps = [(c, inputs[nc + nx + k], None) for k, c in enumerate(s.body.captured)]
        new_outs = [*(outs[i] for i in carries), *outs[nc:], *new_ys]
        # a recipe reading a carry reads its stacked carry-ins: the new scan stacks them
        saved = s.saved or any(leaf.id in c_of for r in recipes for leaf in _leaves(r))
        new = new_scan(rw, s, carries, inputs, xs, caps, new_outs, saved)
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
                return project(rw, new, nc2 + ny2 + carries.index(c_of[n.id]))
            if n.is_const:
                return rw.const(n.attrs["value"], n.dtype, like=n)
            return project(rw, new, nc2 + y_of[n.id])

        used = read.get(node.id, set())
        outputs = [None] * len(node.types)
        for pos, i in enumerate(carries):
            outputs[i] = project(rw, new, pos) if i in used else None
            if s.saved and s.residual(i) in used:
                outputs[s.residual(i)] = project(rw, new, nc2 + ny2 + pos)
        for j in range(ny):
            outputs[nc + j] = project(rw, new, nc2 + j) if nc + j in used else None
        for (k, _), r in zip(accs, recipes):
            if k in used:
                stacked = after(r)
                total = rw.emit("sum", [stacked], {"axes": (0,), "keepdims": False}, like=outs[k])
                outputs[k] = rw.emit(ADD, [inputs[k], total], like=outs[k])
        rw.replace_outputs(node, outputs)
        return new

    return rule


def _accumulate(graph: Graph) -> Graph:
    if not has_scans(graph):
        return rewrite(graph)
    return rewrite(graph, _accumulate_rule(read_outputs(graph)), graph.live_nodes())


loop_prune = in_bodies(_prune)
loop_prune.__doc__ = """Scans lose the ys nothing reads, the carries no read output depends on, and the body
work, xs and captured values that then feed nothing (in bodies too)."""
loop_hoist = in_bodies(_hoist)
loop_hoist.__doc__ = """Body work that reads no carry leaves its scan: captured-only work is done once before
it, x-slice work with a batched form once on the stacked xs (in bodies too)."""
loop_accumulate = in_bodies(_accumulate)
loop_accumulate.__doc__ = """Accumulator carries (`acc + term`) become stacked per-step terms summed once after
the scan; a product term is itself computed after it, batched (in bodies too)."""
