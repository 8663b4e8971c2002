"""The parts of a scan node, and building a new scan from an old one: shared by the loop passes
(passes/loops.py, passes/restack.py).

A scan node (graphc/ops/control.py) has inputs `(*init, *xs, *captured)`, a body whose inputs
are the carries then the x-slices (captured values after them) and whose outputs are the new
carries then the per-step ys, and outputs `(*final_carries, *stacked_ys, *stacked_carry_ins)`
(the last group only while its `saved` attribute is true), every stacked value time-major.
"""

from dataclasses import dataclass

from graphc.errors import GraphStructureError
from graphc.ir.graph import Graph
from graphc.ir.node import Attrs, Node
from graphc.ir.subgraph import SubGraph
from graphc.ops.control import saves_residuals
from graphc.passes.bodies import as_graph
from graphc.passes.rewrite import Rewriter

__all__ = [
    "SCAN",
    "ScanParts",
    "BodyBuilder",
    "has_scans",
    "read_outputs",
    "body_readers",
    "project",
    "live_ids",
    "new_scan",
]

SCAN = "scan"  # the op the loop passes rewrite (graphc/ops/control.py)


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


def has_scans(graph: Graph) -> bool:
    return any(n.op == SCAN for n in graph.nodes)


def read_outputs(graph: Graph) -> dict[int, set[int]]:
    """{tuple node id: indices of its outputs that live projections read}."""
    read: dict[int, set[int]] = {}
    for n in graph.live_nodes():
        if n.opdef.takes_tuple and n.inputs:
            read.setdefault(n.inputs[0].id, set()).add(n.attrs["index"])
    return read


def body_readers(body: SubGraph) -> dict[int, list[Node]]:
    readers: dict[int, list[Node]] = {n.id: [] for n in body.nodes}
    for n in body.nodes:
        for x in n.inputs:
            readers[x.id].append(n)
    return readers


def project(rw: Rewriter, node: Node, index: int) -> Node:
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


def live_ids(outputs, stop=frozenset()) -> set[int]:
    """Ids of the nodes `outputs` read, not looking past the nodes whose ids are in `stop`."""
    seen, stack = set(), list(outputs)
    while stack:
        n = stack.pop()
        if n.id not in seen:
            seen.add(n.id)
            if n.id not in stop:
                stack.extend(n.inputs)
    return seen


def new_scan(rw: Rewriter, s: ScanParts, carries, inputs, xs, caps, outputs, saved: bool | None = None) -> Node:
    """A scan like `s`, whose body has the carries `carries` (old indices; `inputs` are the old
    scan's rewritten inputs), the xs and captured values `xs` and `caps` (triples: old body input
    or None, outer value, old body node a new input stands for or None) and the outputs
    `outputs` (old body nodes: new carries, then ys), stacking its carry-ins if `saved` (None:
    as `s` does). Body inputs that the outputs no longer read are dropped (xs and captured
    values; which carries stay is the caller's choice)."""
    live = live_ids(outputs, {stands.id for _, _, stands in [*xs, *caps] if stands is not None})

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
