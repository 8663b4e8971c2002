"""Building a graphc Graph from a checked ONNX ModelProto, node by node through the rule table."""

from dataclasses import dataclass

import numpy as np
from onnx import GraphProto, NodeProto

from graphc.errors import GraphcError, UnsupportedModelError
from graphc.ir import shapes
from graphc.ir.graph import Graph
from graphc.ir.node import Node
from graphc.onnx.importer_context import NodeContext, unsentinel
from graphc.onnx.importer_registry import Const, NeedsValue, Unsupported, rule_for
from graphc.onnx.importer_values import dim_name, dtype_of, tensor_array

_POISONED = object()  # the output of a node that could not be imported: its consumers are skipped


@dataclass(frozen=True)
class Problem:
    """One node (or initializer, input) the import cannot take, and why."""

    node: str
    op_type: str
    reason: str
    needs_input: str | None = None  # the value a NeedsValue asked for

    def __str__(self):
        if self.op_type in _SOURCES:  # the reason names the value already
            return self.reason
        return f"node {self.node!r} ({self.op_type}): {self.reason}"


_SOURCES = ("initializer", "graph input", "graph output")


class GraphBuilder:
    """Imports one ONNX graph: initializers, inputs, then each node by its rule, then the outputs."""

    def __init__(self, proto: GraphProto, opset: int, source: str, trainable, input_values: dict, name: str):
        self.proto, self.opset, self.source = proto, opset, source
        self.graph = Graph(name)
        self.values: dict[str, object] = {}
        self.problems: list[Problem] = []
        self.input_values = dict(input_values or {})
        self._trainable = trainable

    @classmethod
    def for_body(cls, proto: GraphProto, opset: int, outer: dict, graph: Graph) -> "GraphBuilder":
        """A builder of a sub-graph (a Scan's body) into `graph`, the body being traced: the
        enclosing graph's values are visible by name (graphc captures the ones it reads)."""
        b = cls.__new__(cls)
        b.proto, b.opset, b.source = proto, opset, f"body {proto.name!r}"
        b.graph, b.values, b.problems, b.input_values, b._trainable = graph, dict(outer), [], {}, False
        return b

    def body_outputs(self, args: list) -> list:
        """The body's outputs for its inputs bound to `args`; Unsupported naming every node it cannot take."""
        for t in self.proto.initializer:
            self.values[t.name] = Const(tensor_array(t, f"initializer {t.name!r}"))
        for vi, a in zip(self.proto.input, args):
            self.values[vi.name] = a
        for index, node in enumerate(self.proto.node):
            self._node(index, node)
        missing = [vi.name for vi in self.proto.output if vi.name not in self.values]
        if missing:
            self.problems.append(Problem(missing[0], "graph output", f"body output {missing[0]!r} is made by no node"))
        if self.problems:
            raise Unsupported(f"its body {self.proto.name!r}: " + "; ".join(map(str, self.problems)))
        return [self._as_node(self.values[vi.name]) for vi in self.proto.output]

    def _as_node(self, v):
        return NodeContext(NodeProto(), self.opset, [v]).input(0) if isinstance(v, Const) else v

    def build(self) -> Graph:
        with self.graph:
            self._initializers()
            self._inputs()
            for index, node in enumerate(self.proto.node):
                self._node(index, node)
            self._outputs()
        if self.problems:
            lines = "\n".join(f"  {p}" for p in self.problems)
            raise UnsupportedModelError(
                f"cannot import {self.source} (opset {self.opset}); graphc does not support:\n{lines}", self.problems
            )
        return self.graph

    # -- sources --------------------------------------------------------------------------------
    def _initializers(self) -> None:
        names = [t.name for t in self.proto.initializer]
        trainable = self._trainable
        if isinstance(trainable, set | frozenset | list | tuple):
            wanted = set(trainable)
            unknown = sorted(wanted - set(names))
            if unknown:
                raise GraphcError(
                    f"load({self.source}): trainable names {', '.join(map(repr, unknown))} are not initializers of "
                    f"the model (initializers: {', '.join(map(repr, names[:20])) or 'none'}"
                    f"{', ...' if len(names) > 20 else ''})"
                )
        elif not isinstance(trainable, bool):
            raise GraphcError(
                f"load({self.source}): trainable must be True, False or a set of initializer names, got {trainable!r}"
            )
        for t in self.proto.initializer:
            try:
                value = tensor_array(t, f"initializer {t.name!r}")
            except Unsupported as exc:
                self.problems.append(Problem(t.name, "initializer", str(exc)))
                self.values[t.name] = _POISONED
                continue
            if value.dtype.kind != "f":  # shapes, axes, indices: known at import, folded
                self.values[t.name] = Const(value)
                continue
            train = trainable if isinstance(trainable, bool) else t.name in trainable
            self.values[t.name] = self.graph.param(
                t.name, value.shape, init=value, dtype=value.dtype.name, trainable=train
            )

    def _inputs(self) -> None:
        for vi in self.proto.input:
            if vi.name in self.values:  # an initializer listed as an input too (IR version < 4)
                continue
            t = vi.type
            if not t.HasField("tensor_type"):
                kind = (t.WhichOneof("value") or "untyped value").removesuffix("_type")
                kind = f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
                self.problems.append(
                    Problem(vi.name, "graph input", f"graph input {vi.name!r} is {kind}, not a tensor")
                )
                self.values[vi.name] = _POISONED
                continue
            try:
                dtype = dtype_of(t.tensor_type.elem_type, f"graph input {vi.name!r}")
            except Unsupported as exc:
                self.problems.append(Problem(vi.name, "graph input", str(exc)))
                self.values[vi.name] = _POISONED
                continue
            if vi.name in self.input_values:
                self.values[vi.name] = Const(np.array(self.input_values[vi.name], dtype=dtype, order="C"))
                continue
            dims = []
            for axis, d in enumerate(t.tensor_type.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                else:
                    dims.append(dim_name(d.dim_param) if d.dim_param else dim_name(f"{vi.name}_{axis}"))
            self.values[vi.name] = self.graph.input(vi.name, tuple(dims), dtype)

    # -- nodes ----------------------------------------------------------------------------------
    def _node(self, index: int, proto: NodeProto) -> None:
        label = proto.name or f"{proto.op_type}_{index}"
        problem = self._check(proto, label)
        inputs = []
        for name in proto.input:
            if not name:
                inputs.append(None)
            elif name not in self.values:
                problem = problem or f"input {name!r} is not a graph input, an initializer or an earlier node's output"
                inputs.append(None)
            else:
                inputs.append(self.values[name])
        while inputs and inputs[-1] is None and not proto.input[len(inputs) - 1]:
            inputs.pop()
        if problem is None and any(v is _POISONED for v in inputs):
            return self._poison(proto)  # an input's producer is reported already
        if problem is not None:
            self.problems.append(Problem(label, proto.op_type, problem))
            return self._poison(proto)
        rule = rule_for(proto.op_type, self.opset)
        try:
            with self.graph.scope(label.strip("/") or proto.op_type):
                outs = None
                known = self._known(inputs)
                if rule.fold and known is not None:
                    outs = _fold(rule, proto, self.opset, known)
                if outs is None:
                    outs = _outputs_of(rule.build(NodeContext(proto, self.opset, inputs, bodies=self._body)))
            self._bind(proto, outs)
        except NeedsValue as exc:
            self.problems.append(Problem(label, proto.op_type, str(exc), exc.input_name))
            self._poison(proto)
        except Unsupported as exc:
            self.problems.append(Problem(label, proto.op_type, str(exc)))
            self._poison(proto)
        except GraphcError as exc:
            self.problems.append(Problem(label, proto.op_type, f"{type(exc).__name__}: {exc}"))
            self._poison(proto)

    def _known(self, inputs: list) -> list | None:
        """The inputs as values known at import, if they all are (None otherwise). A one-element float
        initializer counts as known beside known values (Div(Shape(x), 2.0) is shape arithmetic),
        never alone: a node reading parameters only stays in the graph, so they stay trainable."""
        if not inputs or not any(isinstance(v, Const) for v in inputs):
            return None
        out = []
        for v in inputs:
            if isinstance(v, Node) and v.is_param and v.shape in ((), (1,)) and v.name in v.graph.values:
                v = Const(v.graph.values[v.name])
            if not isinstance(v, Const):
                return None
            out.append(v)
        return out

    def _body(self, proto: GraphProto, args: list) -> list:
        from graphc.ir.graph import current_graph

        return GraphBuilder.for_body(proto, self.opset, self.values, current_graph()).body_outputs(args)

    def _check(self, proto: NodeProto, label: str) -> str | None:
        if proto.domain not in ("", "ai.onnx"):
            return f"domain {proto.domain!r} is not supported (graphc imports the default ONNX domain)"
        rule = rule_for(proto.op_type, self.opset)
        if rule is None:
            from graphc.onnx.importer_registry import first_opset

            first = first_opset(proto.op_type)
            if first is None:
                return f"graphc has no import rule for op type {proto.op_type!r}"
            return f"graphc imports {proto.op_type} from opset {first} on, not in opset {self.opset}"
        extra = [a.name for a in proto.attribute if a.name not in rule.attrs]
        if extra:
            return f"attribute{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} not supported"
        return None

    def _bind(self, proto: NodeProto, outs: list) -> None:
        for i, name in enumerate(proto.output):
            if not name:
                continue
            if i >= len(outs) or outs[i] is None:
                raise Unsupported(f"output {i} ({name!r}) is not supported")
            self.values[name] = outs[i]

    def _poison(self, proto: NodeProto) -> None:
        for name in proto.output:
            if name:
                self.values[name] = _POISONED

    def _outputs(self) -> None:
        for vi in self.proto.output:
            v = self.values.get(vi.name, _POISONED)
            if v is _POISONED:
                if vi.name not in self.values:
                    self.problems.append(
                        Problem(vi.name, "graph output", f"graph output {vi.name!r} is made by no node")
                    )
                continue
            self.graph.output(vi.name, self._as_node(v))


def _outputs_of(result) -> list:
    """A rule's result as a list of Node / Const / None."""
    if not isinstance(result, list | tuple):
        result = [result]
    return [Const(r) if isinstance(r, np.ndarray) else r for r in result]


def _fold(rule, proto: NodeProto, opset: int, inputs: list) -> list | None:
    """Evaluate a node whose inputs are all known at import (in a scratch graph, by the reference
    interpreter): its outputs are known at import too. None when an output has a symbolic shape
    (an Expand to (batch, n)): the node is then built into the graph."""
    from graphc.backends.reference import run

    sentinels: dict = {}
    scratch = Graph("fold")
    with scratch:
        outs = _outputs_of(rule.build(NodeContext(proto, opset, inputs, sentinels)))
        nodes = [o for o in outs if isinstance(o, Node)]
        if not all(shapes.is_concrete(o.shape) for o in nodes):
            return None
        values = run(scratch, {}, outputs=nodes) if nodes else []
    it = iter(values)
    return [Const(unsentinel(np.asarray(next(it)), sentinels)) if isinstance(o, Node) else o for o in outs]
