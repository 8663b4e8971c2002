"""Copying a graph node by node into a new Graph, with substitutions: the one way passes rewrite.

Nodes are immutable, so every pass builds a new Graph. `rewrite(graph, rule)` walks the old
nodes in order; `rule(rw, node, inputs)` sees each old node with its *already rewritten*
inputs and returns a replacement node of the new graph, or None to copy the node as it is.
Because inputs are rewritten first, chains (--(--x), folds of folds) collapse in one walk.

The copy keeps names, scopes, locations and phase tags (`phase`, and `grad_of`, a label:
`op#id` labels are renamed to the new graph's node when that node is kept; a removed forward
node keeps nothing alive), re-registers inputs, parameters (sharing the `values` dict, so
in-place updates of a compiled step reach the user's graph), outputs and updates.

A rule may replace a node with several outputs by one of another type (a loop pass dropping
outputs nothing reads): it calls `rw.replace_outputs(old, outputs)` first, naming the new
single node standing for each old output, and the projections `tuple_get(old, i)` read
through become those nodes.
"""

from collections.abc import Callable, Iterable

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, GraphStructureError, ShapeError
from graphc.ir.graph import Graph
from graphc.ir.node import Attrs, Node, TupleNode, TupleType, type_text
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
        self.outputs_of: dict[int, list] = {}  # old tuple node id -> new node per output (replace_outputs)

    # -- building nodes in the new graph -------------------------------------------------------
    def emit(self, op: str, inputs, attrs=None, like: Node | None = None) -> Node:
        """A new `op` node (type inferred by its OpDef), placed like old node `like`."""
        attrs = attrs if isinstance(attrs, Attrs) else Attrs(attrs)
        typ = get(op).infer(list(inputs), attrs)
        if isinstance(typ, TupleType):
            return self._add(op, inputs, attrs, typ, None, None, self._like(like))
        shape, dtype = typ
        return self._add(op, inputs, attrs, shape, dtype, None, self._like(like))

    def const(self, value, dtype: str, like: Node | None = None) -> Node:
        """A constant node of the new graph."""
        arr = np.array(value, dtype=dtype, order="C")
        return self._add("const", (), Attrs({"value": arr}), arr.shape, dtype, None, self._like(like))

    def copy(self, old: Node, inputs, attrs: Attrs | None = None) -> Node:
        """`old` itself, re-created on the new inputs (a registered input/param is re-registered);
        `attrs` replaces its attributes (e.g. a rewritten body) where given, keeping its type."""
        attrs = old.attrs if attrs is None else attrs
        if old.is_tuple:
            node = self._add(old.op, inputs, attrs, TupleType(old.types), None, old.name, old)
        else:
            node = self._add(old.op, inputs, attrs, old.shape, old.dtype, old.name, old)
        if is_variable(self.old, old):
            table = self.new.inputs if self.old.inputs.get(old.name) is old else self.new.params
            table[old.name] = node
        return node

    def _like(self, like: Node | None) -> Node:
        return self.current if like is None else like  # a node has no truth value: never `like or ...`

    def replace_outputs(self, old: Node, outputs) -> None:
        """Stand for the outputs of `old` (a node with several outputs) one by one: `outputs[i]`,
        a single-output node of the new graph of old output i's type, or None where nothing reads
        output i, replaces every projection `tuple_get(old, i)`. The rule calling this may then
        return a replacement for `old` of another type."""
        outputs = list(outputs)
        if not old.is_tuple or len(outputs) != len(old.types):
            raise GraphStructureError(f"replace_outputs: {old.label} has {len(old.types)} outputs, got {len(outputs)}")
        for i, (out, typ) in enumerate(zip(outputs, old.types)):
            if out is not None and (out.graph is not self.new or out.types != (typ,)):
                raise GraphStructureError(
                    f"replace_outputs: output {i} of {old.label} is {type_text(*typ)}; {out!r} is not a node of "
                    f"that type in the new graph"
                )
        self.outputs_of[old.id] = outputs

    def projected(self, old: Node) -> Node | None:
        """For a projection of a node whose outputs were replaced one by one, the new node standing
        for the output it reads; None for any other node."""
        if not old.opdef.takes_tuple or not old.inputs or old.inputs[0].id not in self.outputs_of:
            return None
        src = old.inputs[0]
        out = self.outputs_of[src.id][old.attrs["index"]]
        if out is None:
            raise GraphStructureError(
                f"{old.label} reads output {old.attrs['index']} of {src.label}, which a pass removed"
            )
        return out

    def _add(self, op, inputs, attrs, shape, dtype, name, like: Node) -> Node:
        new = self.new
        args = (new, len(new.nodes), op, tuple(inputs), attrs)
        place = (name, like.scope, like.location, like.phase, self._grad_label(like.grad_of))
        node = TupleNode(*args, shape, *place) if isinstance(shape, TupleType) else Node(*args, shape, dtype, *place)
        new.nodes.append(node)
        return node

    def _grad_label(self, label: str | None) -> str | None:
        """A grad_of label for the new graph: `op#id` of an old node becomes that node's new label
        (ids change), or `op (removed)` when the pass removed it; names stay as they are. In a body
        (a sealed graph) labels may name nodes of any enclosing graph, so they stay as they are."""
        if label is None or "#" not in label or self.old.sealed:
            return label
        op, _, num = label.rpartition("#")
        if not num.isdigit() or int(num) >= len(self.old.nodes) or self.old.nodes[int(num)].label != label:
            return label
        kept = self.map.get(int(num))
        return kept.label if kept is not None else f"{op} (removed)"

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
    A replacement is used only if it has exactly the old node's shape and dtype (or, for a node
    with several outputs, after `rw.replace_outputs`); a rule that fails to build its
    replacement (a shape/dtype error) leaves the node as it was.
    Registered inputs and parameters are always copied, never replaced.
    """
    rw = Rewriter(graph)
    for old in graph.nodes if nodes is None else nodes:
        projected = rw.projected(old)
        if projected is not None:
            rw.map[old.id] = projected
            continue
        inputs = [rw.map[x.id] for x in old.inputs]
        rw.current = old
        new = None
        if rule is not None and not rw.is_variable(old):
            try:
                new = rule(rw, old, inputs)
            except _RULE_ERRORS:
                new = None
            if new is not None and new.types != old.types and old.id not in rw.outputs_of:
                new = None
            if new is None:
                rw.outputs_of.pop(old.id, None)
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
            if out is not None and out.types == node.types:
                return out
        return None

    return rule
