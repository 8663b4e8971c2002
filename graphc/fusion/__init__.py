"""Kernel fusion by op kind (after TVM's FuseOps), for every backend.

`fuse(nodes, roots, fusable_reduction)` groups the live nodes of a graph into kernels:

- elementwise/broadcast ops with a scalar template form loop nests with their producers
  (one kernel for a chain, however long, and for diamonds that join again);
- a reduction the backend can generate code for (``fusable_reduction(node)``) takes its
  elementwise producers into its loop nest;
- an output-fusable op (matmul, conv2d) opens a group that its elementwise consumers of the
  same shape join as an epilogue (bias add, activation, the relu mask in the backward pass,
  an SGD update);
- everything else (injective, opaque, impure ops (random, collective), ops without a template) is a kernel alone;
  so is every op with several outputs and every projection reading one of them (tuple_get).

A node read outside its group, or a root (output/update), is *materialised* (written to
memory); the other nodes of a group live in registers. Groups are merged only when that
makes no cycle between kernels. The kernel list is in a valid schedule order.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from graphc.ir import shapes
from graphc.ops.registry import Kind

__all__ = ["Kernel", "fuse", "fuse_body", "is_loop_op", "summary"]


@dataclass
class Kernel:
    """One fused group: what viz draws and what a backend lowers to one kernel.

    kind: 'elementwise', 'reduction', 'output-fusable', or the op's own kind for singletons.
    node_ids: the group's nodes in topological order; anchor: the reduction/matmul/conv node;
    outputs: materialised node ids; inputs: ids of nodes the group reads from outside.
    source: the generated kernel source (filled by the backend), '' for library calls.
    """

    name: str
    kind: str
    node_ids: list[int]
    anchor: int | None = None
    outputs: list[int] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    source: str = ""
    loop_shape: tuple = ()

    def __repr__(self):
        return f"<Kernel {self.name}: {self.kind}, {len(self.node_ids)} nodes>"


def is_loop_op(node) -> bool:
    """Elementwise/broadcast ops that lower to one expression per element.

    A BROADCAST op without a scalar template is a pure broadcast (its value is its input's,
    read at a broadcast index), so it lowers to the identity.
    """
    od = node.opdef
    if not od.pure or node.is_const or node.is_tuple or not node.inputs:
        return False
    if od.kind is Kind.ELEMENTWISE:
        return od.scalar is not None
    if od.kind is Kind.BROADCAST:
        return od.scalar is not None or len(node.inputs) == 1
    return False


class _Group:
    __slots__ = ("kind", "nodes", "anchor", "loop", "closed", "id")

    def __init__(self, gid, kind, node, loop):
        self.id, self.kind, self.nodes, self.anchor, self.loop, self.closed = gid, kind, [node], None, loop, False


def fuse(nodes, roots, fusable_reduction: Callable | None = None) -> list[Kernel]:
    """Group `nodes` (topologically ordered, sources included) into kernels; see the module doc."""
    fusable_reduction = fusable_reduction or (lambda n: False)
    root_ids = {n.id for n in roots}
    consumers: dict[int, list] = {n.id: [] for n in nodes}
    for n in nodes:
        for x in n.inputs:
            if x.id in consumers:
                consumers[x.id].append(n)
    group_of: dict[int, _Group] = {}
    groups: list[_Group] = []

    def new(kind, node, loop):
        g = _Group(len(groups), kind, node, loop)
        groups.append(g)
        group_of[node.id] = g
        return g

    # Cycles are checked between groups, not nodes: a path may enter a group at one node and
    # leave it from another (a group holding `cast(k)` and `cast(k) * sigmoid(x)`, read by
    # a reduction of `cast(k)` whose gradient reaches `sigmoid(x)`'s group) although no
    # node-level path joins them.
    def successors(g: _Group) -> set:
        """Ids of the groups reading a value of g (nodes not yet grouped come later in
        topological order, so they cannot lead back to a group that exists now)."""
        ids = {n.id for n in g.nodes}
        return {group_of[c.id].id for n in g.nodes for c in consumers[n.id] if c.id not in ids and c.id in group_of}

    def group_path(a: _Group, b: _Group, through_other: bool) -> bool:
        """Is there a path of groups from a to b (through_other: through at least one other group)?"""
        start = successors(a)
        if not through_other and b.id in start:
            return True
        stack, seen = [i for i in start if i != b.id], {a.id}
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            nxt = successors(groups[i])
            if b.id in nxt:
                return True
            stack.extend(nxt - seen)
        return False

    def depends(a: _Group, b: _Group) -> bool:
        """Is there a path from group a to group b through another group (merging would cycle)?"""
        return group_path(a, b, through_other=True)

    def reaches(a: _Group, b: _Group) -> bool:
        """Does group b depend on group a (directly or not)?"""
        return group_path(a, b, through_other=False)

    def feeds_anchor(p: _Group, target: _Group) -> bool:
        """Does the target's anchor (a GEMM/conv) read p directly? Its epilogue runs after the
        anchor, so p cannot join it (an indirect path is caught by `depends`)."""
        pids = {m.id for m in p.nodes}
        return target.anchor is not None and any(x.id in pids for x in target.anchor.inputs)

    def accepts(g: _Group, n) -> bool:
        if g.closed or g.kind not in ("elementwise", "output-fusable"):
            return False
        return n.shape == g.loop

    for n in nodes:
        od = n.opdef
        if n.is_source:
            continue
        producers = [group_of[x.id] for x in n.inputs if x.id in group_of]
        if is_loop_op(n):
            target = None
            for g in sorted(dict.fromkeys(producers), key=lambda g: (g.kind != "output-fusable", -len(g.nodes))):
                if accepts(g, n) and not any(reaches(g, p) for p in producers if p is not g):
                    target = g
                    break
            if target is None:
                target = new("elementwise", n, n.shape)
            else:
                target.nodes.append(n)
                group_of[n.id] = target
            # join sibling elementwise groups of the same loop shape (diamonds)
            for p in dict.fromkeys(producers):  # in input order: a set of groups iterates by address
                if p is not target and p.kind == "elementwise" and p.loop == target.loop and not p.closed:
                    if not depends(p, target) and not depends(target, p) and not feeds_anchor(p, target):
                        _merge(target, p, group_of, groups)
        elif od.kind is Kind.REDUCTION and fusable_reduction(n) and len(n.inputs) == 1:
            g = group_of.get(n.inputs[0].id)
            if g is not None and g.kind == "elementwise" and g.loop == n.inputs[0].shape and not g.closed:
                g.nodes.append(n)
                g.kind, g.anchor, g.closed = "reduction", n, True
                group_of[n.id] = g
            else:
                g = new("reduction", n, n.inputs[0].shape)
                g.anchor, g.closed = n, True
        elif od.kind is Kind.OUT_FUSABLE:
            g = new("output-fusable", n, n.shape)
            g.anchor = n
        else:  # an opaque singleton; a node with several outputs has no one loop shape
            g = new(od.kind.value, n, None if n.is_tuple else n.shape)
            g.closed = True

    _absorb_small(groups, group_of, consumers, root_ids, depends)
    groups = [g for g in groups if g.nodes]
    return _finish(groups, group_of, consumers, root_ids)


def fuse_body(body, fusable_reduction: Callable | None = None) -> list[Kernel]:
    """Kernels of a loop body (a graphc.ir.subgraph.SubGraph), grouped like a graph's: its
    outputs are the roots (materialised at each step); node ids are the body graph's."""
    return fuse(body.nodes, body.outputs, fusable_reduction)


def _merge(into: _Group, other: _Group, group_of, groups):
    into.nodes.extend(other.nodes)
    for m in other.nodes:
        group_of[m.id] = into
    other.nodes = []


def _absorb_small(groups, group_of, consumers, root_ids, depends):
    """Pull an elementwise group of a smaller (broadcastable) shape whose values are read by one
    other loop group only into that group: recomputing a bias correction or a scale per element
    is cheaper than a kernel launch and a buffer."""
    for g in list(groups):
        if g.kind != "elementwise" or not g.nodes:
            continue
        ids = {n.id for n in g.nodes}
        if ids & root_ids:
            continue
        users = {group_of[c.id].id: group_of[c.id] for n in g.nodes for c in consumers[n.id] if c.id not in ids}
        if len(users) != 1:
            continue
        (u,) = users.values()
        if u.kind not in ("elementwise", "reduction") or u.loop == g.loop:
            continue
        if u.kind == "reduction" and any(c is u.anchor for n in g.nodes for c in consumers[n.id]):
            continue  # the anchor reads its input at the loop index; keep it a full-shape buffer
        try:
            if shapes.broadcast(g.loop, u.loop) != tuple(u.loop):
                continue
        except Exception:
            continue
        if depends(g, u):
            continue
        _merge(u, g, group_of, groups)


def _finish(groups, group_of, consumers, root_ids) -> list[Kernel]:
    # schedule groups topologically; groups that write updates go as late as possible so that
    # the old values they overwrite in place have been read by everyone else first
    deps = {g.id: set() for g in groups}
    for g in groups:
        for n in g.nodes:
            for x in n.inputs:
                h = group_of.get(x.id)
                if h is not None and h is not g:
                    deps[g.id].add(h.id)
    by_id = {g.id: g for g in groups}
    order, done = [], set()
    pending = [g.id for g in groups]
    while pending:
        ready = [i for i in pending if deps[i] <= done]
        pick = min(ready, key=lambda i: (any(n.id in root_ids for n in by_id[i].nodes), i))
        order.append(by_id[pick])
        done.add(pick)
        pending.remove(pick)
    kernels = []
    for i, g in enumerate(order):
        g.nodes.sort(key=lambda n: n.id)
        ids = {n.id for n in g.nodes}
        outs = [n.id for n in g.nodes if n.id in root_ids or any(c.id not in ids for c in consumers[n.id])]
        ins = []
        for n in g.nodes:
            for x in n.inputs:
                if x.id not in ids and x.id not in ins:
                    ins.append(x.id)
        ops = [n.op for n in g.nodes]
        label = "_".join(dict.fromkeys(ops[:1] + ops[1:]))[:60] if g.kind != "elementwise" else _ew_label(ops)
        anchor = g.anchor.id if g.anchor is not None else None
        kernels.append(
            Kernel(f"k{i}_{label}", g.kind, [n.id for n in g.nodes], anchor, outs, ins, loop_shape=tuple(g.loop or ()))
        )
    return kernels


def _ew_label(ops):
    uniq = list(dict.fromkeys(ops))
    return "_".join(uniq[:4]) + ("_etc" if len(uniq) > 4 else "")


def summary(kernels, graph=None) -> str:
    """One line per kernel: name, kind, node count, materialised outputs."""
    lines = []
    for k in kernels:
        outs = ", ".join(graph.nodes[i].label for i in k.outputs) if graph is not None else k.outputs
        lines.append(f"{k.name:40s} {k.kind:15s} {len(k.node_ids):3d} nodes -> {outs}")
    return "\n".join(lines)
