"""NodeContext: what an import rule sees of one ONNX node (attributes, inputs, opset)."""

import numpy as np
from onnx import NodeProto

from graphc.ir.node import Node
from graphc.onnx.importer_registry import Const, NeedsValue, Unsupported
from graphc.onnx.importer_values import attribute
from graphc.ops.registry import constant

# Symbolic dimensions stand for these integers while a shape computation is folded at import:
# 2**40 apart from anything a real shape holds, so a result equal to one is that dimension and a
# result near them (batch * 2, batch + 1) is arithmetic on it, which the import refuses.
SENTINEL_BASE, SENTINEL_STEP = 2**40, 2**21


class NodeContext:
    """One ONNX node, for its rule: `n.attr('axis', 0)`, `n.input(0)` (a graphc node), `n.ints(1)`
    (an input whose value the rule needs at import), `n.has(2)` (optional inputs)."""

    def __init__(self, proto: NodeProto, opset: int, inputs: list, sentinels: dict | None = None, bodies=None):
        self.proto = proto
        self.opset = opset
        self._inputs = inputs  # Node | Const | None (an omitted optional input) per input
        self._attrs = {a.name: a for a in proto.attribute}
        self._sentinels = sentinels  # symbol -> integer, while folding; None when building the graph
        self._made: dict[int, Node] = {}
        self._bodies = bodies  # (GraphProto, args) -> output nodes, for ops with sub-graphs

    def body(self, graph, args: list) -> list[Node]:
        """Import a sub-graph attribute (a GraphProto) into the body being traced, its inputs bound to args."""
        if self._bodies is None:
            raise Unsupported("a sub-graph cannot be folded at import")
        return self._bodies(graph, args)

    # -- the node -------------------------------------------------------------------------------
    @property
    def op_type(self) -> str:
        return self.proto.op_type

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        """How many outputs the model declares (trailing omitted ones not counted)."""
        outs = list(self.proto.output)
        while outs and not outs[-1]:
            outs.pop()
        return len(outs)

    def wants_output(self, i: int) -> bool:
        return i < len(self.proto.output) and bool(self.proto.output[i])

    def attr(self, name: str, default=None):
        a = self._attrs.get(name)
        return default if a is None else attribute(a, f"node {self.proto.name!r}")

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def unsupported(self, what: str):
        raise Unsupported(what)

    # -- inputs ---------------------------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self._inputs) and self._inputs[i] is not None

    def input_name(self, i: int) -> str:
        return self.proto.input[i]

    def input(self, i: int) -> Node:
        """Input i as a graphc node (a value known at import becomes a constant)."""
        v = self._value(i)
        if isinstance(v, Node):
            return v
        if id(v) not in self._made:
            self._made[id(v)] = constant(
                self._numeric(v, i), v.value.dtype.name if v.value.dtype != object else "int64"
            )
        return self._made[id(v)]

    def inputs(self) -> list[Node]:
        return [self.input(i) for i in range(self.num_inputs) if self.has(i)]

    def known(self, i: int) -> np.ndarray | None:
        """Input i's value if it is known at import (symbolic dims as names), else None."""
        v = self._inputs[i] if i < len(self._inputs) else None
        return v.value if isinstance(v, Const) else None

    def const(self, i: int, what: str) -> np.ndarray:
        """Input i's value, which the rule needs at import; NeedsValue if it is computed at run time."""
        v = self._value(i)
        if isinstance(v, Const):
            return v.value
        if v.is_param and v.graph.values.get(v.name) is not None:
            return v.graph.values[v.name]  # a float initializer: its value, read now (a pad value, a bound)
        raise NeedsValue(
            f"its input {i} ({what}, {self.proto.input[i]!r}) must be known at import (an initializer, a Constant "
            f"or a shape computation), but it is computed when the graph runs",
            self.proto.input[i],
        )

    def numbers(self, i: int, what: str) -> np.ndarray:
        """Input i's value, known at import and free of symbolic dimensions."""
        value = self.const(i, what)
        if value.dtype == object:
            raise Unsupported(f"its input {i} ({what}) depends on symbolic dimension(s) {_symbols(value)}")
        return value

    def ints(self, i: int, what: str) -> tuple[int, ...]:
        """Input i's value as a tuple of ints, known at import and free of symbolic dimensions."""
        return tuple(int(v) for v in self.numbers(i, what).reshape(-1))

    def dims(self, i: int, what: str) -> tuple:
        """Input i's value as a tuple of ints and dimension names (a shape), known at import."""
        value = self.const(i, what)
        return tuple(v if isinstance(v, str) else int(v) for v in value.reshape(-1))

    def dtype(self, i: int) -> str:
        v = self._value(i)
        return v.dtype if isinstance(v, Node) else ("int64" if v.value.dtype == object else v.value.dtype.name)

    def _value(self, i: int):
        if not self.has(i):
            raise Unsupported(f"input {i} is missing")
        return self._inputs[i]

    def _numeric(self, v: Const, i: int) -> np.ndarray:
        if not v.symbolic:
            return v.value if v.value.dtype != object else v.value.astype(np.int64)
        if self._sentinels is None:
            raise Unsupported(
                f"its input {i} ({self.proto.input[i]!r}) is a shape with symbolic dimension(s) "
                f"{_symbols(v.value)}, used as data"
            )
        out = np.empty(v.value.shape, np.int64)
        for pos, d in np.ndenumerate(v.value):
            if isinstance(d, str):
                if d not in self._sentinels:
                    self._sentinels[d] = SENTINEL_BASE + SENTINEL_STEP * len(self._sentinels)
                d = self._sentinels[d]
            out[pos] = int(d)
        return out


def unsentinel(value: np.ndarray, sentinels: dict) -> np.ndarray:
    """A folded result with the sentinel integers turned back into dimension names; Unsupported
    if it holds arithmetic on them."""
    if not sentinels or value.dtype.kind not in "iu":
        if sentinels and value.dtype.kind == "f" and value.size and np.abs(value).max() >= SENTINEL_BASE // 2:
            raise Unsupported(f"its result depends on symbolic dimension(s) {', '.join(map(repr, sentinels))}")
        return value
    names = {v: k for k, v in sentinels.items()}
    big = np.abs(value) >= SENTINEL_BASE // 2
    if not big.any():
        return value
    out = value.astype(object)
    for pos in np.ndindex(value.shape):
        if not big[pos]:
            continue
        v = int(value[pos])
        if v not in names:
            raise Unsupported(
                f"its result computes with symbolic dimension(s) {', '.join(map(repr, sentinels))}; graphc "
                f"folds shapes that move symbolic dimensions, not arithmetic on them"
            )
        out[pos] = names[v]
    return out


def _symbols(value: np.ndarray) -> str:
    return ", ".join(repr(v) for v in dict.fromkeys(v for v in value.flat if isinstance(v, str)))
