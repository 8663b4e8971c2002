"""Copying a graph node by node into a new Graph, with substitutions: the one way passes rewrite.

Nodes are immutable, so every pass builds a new Graph. `rewrite(graph, rule)` walks the old
nodes in order; `rule(rw, node, inputs)` sees each old node with its *already rewritten*
inputs and returns a replacement node of the new graph, or None to copy the node as it is.
Because inputs are rewritten first, chains (--(--x), folds of folds) collapse in one walk.

The copy keeps names, scopes, locations and backward marks (`forward_of`, mapped to the new
graph), re-registers inputs, parameters (sharing the `values` dict, so in-place updates of a
compiled step reach the user's graph), outputs and updates.
"""

from collections.abc import Callable, Iterable

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, ShapeError
from graphc.ir.graph import Graph
from graphc.ir.node import Attrs, Node
from graphc.ops.registry import get

Rule = Callable[["Rewriter", Node, list], Node | None]


class Rewriter:
    """Builds the new graph; `map[old.id]` is the new node standing for old node `old`."""

    def __init__(self, graph: Graph):
        self.old = graph
        new = Graph(graph.name, graph.seed)
        new.values = graph.values  # shared: updates applied to the new graph reach the user's arrays
        new.reserve_scope_names(graph.scope_counts)
        self.new = new
        self.map: dict[int, Node] = {}
        self.memo: dict = {}  # for rules that build one helper node per input (shared across uses)
        self.current: Node | None = None  # the old node being rewritten: default origin of new nodes

    # -- building nodes in the new graph -------------------------------------------------------
    def emit(self, op: str, inputs, attrs=None, like: Node | None = None) -> Node:
        """A new `op` node (type inferred by its OpDef), placed like old node `like`."""
        attrs = attrs if isinstance(attrs, Attrs) else Attrs(attrs)
        shape, dtype = get(op).infer(list(inputs), attrs)
        return self._add(op, inputs, attrs, shape, dtype, None, like or self.current)

    def const(self, value, dtype: str, like: Node | None = None) -> Node:
        """A constant node of the new graph."""
        arr = np.array(value, dtype=dtype, order="C")
        return self._add("const", (), Attrs({"value": arr}), arr.shape, dtype, None, like or self.current)

    def copy(self, old: Node, inputs) -> Node:
        """`old` itself, re-created on the new inputs (a registered input/param is re-registered)."""
        node = self._add(old.op, inputs, old.attrs, old.shape, old.dtype, old.name, old)
        if is_variable(self.old, old):
            table = self.new.inputs if self.old.inputs.get(old.name) is old else self.new.params
            table[old.name] = node
        return node

    def _add(self, op, inputs, attrs, shape, dtype, name, like: Node) -> Node:
        new = self.new
        fwd = self._forward_of(like.forward_of) if like.forward_of is not None else None
        node = Node(new, len(new.nodes), op, tuple(inputs), attrs, shape, dtype, name, like.scope,
                    like.location, fwd)  # fmt: skip
        new.nodes.append(node)
        return node

    def _forward_of(self, old: Node) -> Node:
        """The new node a backward node is marked as differentiating.

        When that forward node was removed (dead code), the mark moves to its nearest kept
        ancestor, so `is_backward` survives and the mark stays inside the new graph.
        """
        seen, queue = set(), [old]
        while queue:
            n = queue.pop(0)
            if n.id in self.map:
                return self.map[n.id]
            if n.id not in seen:
                seen.add(n.id)
                queue.extend(n.inputs)
        return self._ghost(old)  # a dead computation on constants only: keep a copy as the anchor

    def _ghost(self, old: Node) -> Node:
        if old.id not in self.map:
            self.map[old.id] = self.copy(old, [self._ghost(x) for x in old.inputs])
        return self.map[old.id]

    def is_variable(self, old: Node) -> bool:
        return is_variable(self.old, old)

    # -- finishing -----------------------------------------------------------------------------------
    def finish(self) -> Graph:
        old, new = self.old, self.new
        for table, target in ((old.inputs, new.inputs), (old.params, new.params)):
            for name, node in table.items():  # a walk limited to live nodes still keeps every variable
                if name not in target:
                    self.map[node.id] = self.copy(node, ())
        # Keep the user's declaration order of inputs and params (feeds and drawings list them so).
        new.inputs = {k: new.inputs[k] for k in old.inputs}
        new.params = {k: new.params[k] for k in old.params}
        new.outputs = {k: self.map[v.id] for k, v in old.outputs.items()}
        new.updates = {k: self.map[v.id] for k, v in old.updates.items()}
        return new


def is_variable(graph: Graph, node: Node) -> bool:
    """True for a graph's registered inputs and parameters (passes never replace them)."""
    name = node.name
    return name is not None and (graph.inputs.get(name) is node or graph.params.get(name) is node)


_RULE_ERRORS = (ShapeError, DTypeError, AttributeValueError)


def rewrite(graph: Graph, rule: Rule | None = None, nodes: Iterable[Node] | None = None, with_map: bool = False):
    """Copy `graph` (or only `nodes`, a topologically ordered subset) applying `rule`.

    Returns the new Graph, or (new graph, {old node id: new node}) when `with_map` is set.
    A replacement is used only if it has exactly the old node's shape and dtype; a rule that
    fails to build its replacement (a shape/dtype error) leaves the node as it was.
    Registered inputs and parameters are always copied, never replaced.
    """
    rw = Rewriter(graph)
    for old in graph.nodes if nodes is None else nodes:
        inputs = [rw.map[x.id] for x in old.inputs]
        rw.current = old
        new = None
        if rule is not None and not rw.is_variable(old):
            try:
                new = rule(rw, old, inputs)
            except _RULE_ERRORS:
                new = None
            if new is not None and (new.shape != old.shape or new.dtype != old.dtype):
                new = None
        rw.map[old.id] = new if new is not None else rw.copy(old, inputs)
    rw.current = None
    new = rw.finish()
    return (new, rw.map) if with_map else new


def table_rule(table: dict[str, list[Rule]]) -> Rule:
    """A rule that tries `table[node.op]` in order; the first replacement of the right type wins."""

    def rule(rw: Rewriter, node: Node, inputs: list) -> Node | None:
        for r in table.get(node.op, ()):
            try:
                out = r(rw, node, inputs)
            except _RULE_ERRORS:
                out = None
            if out is not None and out.shape == node.shape and out.dtype == node.dtype:
                return out
        return None

    return rule
