"""Sub-graphs: a body with explicit inputs and outputs, carried by an op as an attribute.

`trace(fn, types)` runs a Python function once on fresh input nodes of a new body Graph and
returns the SubGraph it built and the nodes of the enclosing graph it captured: reading a
node of an enclosing graph inside `fn` (a weight, say) adds an input to the body standing
for it (a loop-invariant input); the op that carries the body takes the captured nodes as
inputs of its own, after the others.

A SubGraph is immutable and content-hashed: two bodies with the same nodes (ops, attributes,
types, wiring), inputs and outputs are equal and hash equal, whatever their names, scopes
and source lines, so CSE and the kernel cache see them as one.
"""

import contextlib
import hashlib

from graphc.errors import GraphStructureError, where
from graphc.ir import dtypes, shapes
from graphc.ir.graph import Graph, _stack, current_graph
from graphc.ir.location import user_location
from graphc.ir.node import Node, _hashable


class SubGraph:
    """A body: `graph` (a Graph of its own), its ordered `inputs` (input nodes of that graph),
    `captured` (more input nodes, standing for values of an enclosing graph, after the inputs)
    and its ordered `outputs` (nodes of the graph; an output may be an input)."""

    __slots__ = ("graph", "inputs", "captured", "outputs", "_key", "_digest")

    def __init__(self, graph: Graph, inputs, outputs, captured=()):
        inputs, captured, outputs = tuple(inputs), tuple(captured), tuple(outputs)
        for what, nodes in (("input", inputs + captured), ("output", outputs)):
            for n in nodes:
                if not isinstance(n, Node) or n.graph is not graph:
                    raise GraphStructureError(f"body {graph.name!r}: {what} {n!r} is not a node of the body")
                if what == "input" and not n.is_input:
                    raise GraphStructureError(f"body {graph.name!r}: input {n.label} is a {n.op}, not an input")
                if what == "output" and n.is_tuple:
                    raise GraphStructureError(f"body {graph.name!r}: output {n.label} has several outputs")
        if len({id(n) for n in inputs + captured}) != len(inputs + captured):
            raise GraphStructureError(f"body {graph.name!r}: an input is listed twice")
        params = [n.name for n in graph.nodes if n.is_param]
        if params:
            raise GraphStructureError(
                f"body {graph.name!r} declares parameters ({', '.join(params)}); declare them outside the body"
            )
        for slot, value in (
            ("graph", graph),
            ("inputs", inputs),
            ("captured", captured),
            ("outputs", outputs),
            ("_key", None),
            ("_digest", None),
        ):
            object.__setattr__(self, slot, value)

    def __setattr__(self, key, value):
        raise AttributeError(f"sub-graphs are immutable (tried to set {key!r})")

    @property
    def all_inputs(self) -> tuple:
        """The inputs, then the captured inputs: the order in which a body is fed."""
        return self.inputs + self.captured

    @property
    def input_types(self) -> tuple:
        return tuple((n.shape, n.dtype) for n in self.all_inputs)

    @property
    def output_types(self) -> tuple:
        return tuple((n.shape, n.dtype) for n in self.outputs)

    @property
    def nodes(self) -> list[Node]:
        """Every input and what the outputs depend on, in topological order."""
        live = {n.id for n in self.graph.live_nodes(self.outputs)} | {n.id for n in self.all_inputs}
        return [n for n in self.graph.nodes if n.id in live]

    def content_key(self) -> tuple:
        """What equality means: ops, attributes, types and wiring by position, not names or lines."""
        if self._key is None:
            nodes = self.nodes
            pos = {n.id: i for i, n in enumerate(nodes)}
            rows = tuple(
                (n.op, tuple(pos[x.id] for x in n.inputs), () if n.is_input else n.attrs.key(), _types_key(n))
                for n in nodes
            )
            key = (
                rows,
                tuple(pos[n.id] for n in self.inputs),
                tuple(pos[n.id] for n in self.captured),
                tuple(pos[n.id] for n in self.outputs),
            )
            object.__setattr__(self, "_key", key)
        return self._key

    @property
    def digest(self) -> str:
        """A SHA-256 of the content key (hex): equal bodies, equal digests."""
        if self._digest is None:
            text = repr(_hashable(self.content_key())).encode()
            object.__setattr__(self, "_digest", hashlib.sha256(text).hexdigest())
        return self._digest

    def __eq__(self, other):
        return isinstance(other, SubGraph) and (self is other or self.content_key() == other.content_key())

    def __hash__(self):
        return hash(self.digest)

    def __repr__(self):
        ins = ", ".join(n.type_str for n in self.all_inputs)
        outs = ", ".join(n.type_str for n in self.outputs)
        return f"<SubGraph {self.graph.name!r}: ({ins}) -> ({outs}), {len(self.nodes)} nodes>"

    def text(self, indent: int = 0) -> str:
        from graphc.ir.text import body_text

        return body_text(self, indent)

    def to_networkx(self):
        from graphc.ir.nx import body_to_networkx

        return body_to_networkx(self)


def _types_key(n: Node) -> tuple:
    return tuple((tuple(s), d) for s, d in n.types)


def _checked_type(op: str, i: int, t, loc):
    """(shape, dtype) from a node (its type) or a (shape, dtype) pair."""
    if isinstance(t, Node):
        if t.is_tuple:
            raise GraphStructureError(f"{op}: body input {i} ({t.label}) has several outputs" + where(loc))
        return t.shape, t.dtype
    if not (isinstance(t, tuple | list) and len(t) == 2):
        raise GraphStructureError(
            f"{op}: body input {i} must be a node or a (shape, dtype) pair, got {t!r}" + where(loc)
        )
    return shapes.normalize(t[0], f"{op}: body input {i}"), dtypes.canonical(t[1])


def trace(fn, types, names=None, op: str = "body", name: str | None = None, enclosing: Graph | None = None):
    """Trace `fn` into a body: (SubGraph, captures).

    `types`: one entry per argument of `fn`, a node (its type is used) or a (shape, dtype) pair;
    `names`: the body's input names (default x0, x1, ...). `fn` returns a node or a list/tuple
    of nodes, the body's outputs in order. Nodes of the enclosing graph (default: the graph of
    the innermost `with` block or body being traced) that `fn` reads are captured: `captures`
    lists them, in the order of `SubGraph.captured`. The body's nodes take the enclosing graph's
    current scope. Errors name `op` and the user's line.
    """
    loc = user_location()
    enclosing = enclosing or current_graph(required=False)
    if enclosing is None:
        for t in types:
            if isinstance(t, Node):
                enclosing = t.graph
                break
    if enclosing is None:
        raise GraphStructureError(f"{op}: no graph to trace the body in; call it inside `with graph:`" + where(loc))
    types = [_checked_type(op, i, t, loc) for i, t in enumerate(types)]
    names = [f"x{i}" for i in range(len(types))] if names is None else list(names)
    if len(names) != len(types) or len(set(names)) != len(names):
        raise GraphStructureError(f"{op}: body input names {names} must be {len(types)} distinct names" + where(loc))
    body = Graph(name or f"{enclosing.name}/{op}", enclosing.seed, enclosing=enclosing)
    with body.at_scope(enclosing.current_scope), _tracing(body):  # body nodes sit in the caller's scope
        inputs = [body.input(nm, shape, dtype) for nm, (shape, dtype) in zip(names, types)]
        result = fn(*inputs)
        single = isinstance(result, Node)
        results = [result] if single else result
        if not isinstance(results, tuple | list):
            raise GraphStructureError(
                f"{op}: the body must return a node or a tuple/list of nodes, got {type(result).__name__}" + where(loc)
            )
        outputs = []
        for i, r in enumerate(results):
            if not isinstance(r, Node):
                raise GraphStructureError(
                    f"{op}: the body's output {i} must be a graph node, got {type(r).__name__} {r!r:.60}" + where(loc)
                )
            outputs.append(body.own(r, op, loc))
    captured = [p for _, p in body.captures]
    sub = SubGraph(body, inputs, outputs, captured)
    return sub, [outer for outer, _ in body.captures]


@contextlib.contextmanager
def _tracing(body: Graph):
    """`body` is the graph being built (ops add their nodes there, capturing outer nodes)."""
    stack = _stack("graphs")
    stack.append(body)
    body.tracing = True
    try:
        yield
    finally:
        body.tracing = False
        body.sealed = True
        stack.pop()
