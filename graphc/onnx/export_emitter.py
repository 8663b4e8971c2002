"""The state of one ONNX export: the value name of every graphc node, and the ONNX nodes written so far.

An export rule (registered on its op with `graphc.ops.registry.lowering(op, "onnx")`, see
export_rules.py) has the signature `rule(node, e, ins) -> name | [names]`: `node` is the graphc
node, `e` the Emitter, `ins` the ONNX value names of the node's inputs (None for an input with
several outputs: read those with `e.values(input)`). It writes ONNX nodes with `e.op(...)` and
returns the name of the value it computes (one per output for an op with several outputs). A rule
that cannot export a particular node raises NoOnnxForm with the reason.
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = 17  # the one opset every exported file declares (ONNX 1.12, 2022: every current runtime reads it)
IR_VERSION = 8  # the IR version of opset 17
INT64_MIN = -(2**63)  # a Slice end that runs past index 0 with a negative step


class NoOnnxForm(Exception):
    """Raised by an export rule for a node it cannot write; the message says why."""


ONNX_DTYPES = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int32": TensorProto.INT32,
    "int64": TensorProto.INT64,
    "bool": TensorProto.BOOL,
}


def value_info(name: str, shape, dtype: str):
    """A typed ValueInfoProto; symbolic dims become dim_param."""
    dims = [d if isinstance(d, str) else int(d) for d in shape]
    return helper.make_tensor_value_info(name, ONNX_DTYPES[dtype], dims)


class Names:
    """Unique value and node names across a model and its sub-graphs (ONNX's names are global)."""

    def __init__(self):
        self.taken: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = hint or "v"
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


class Emitter:
    """Writes one ONNX graph (the model's, or a loop body's): `values` maps graphc node ids to
    ONNX value names (a list for a node with several outputs); `dims` maps each symbolic dimension
    to a value and axis that have it at run time (for shape tensors)."""

    def __init__(self, names: Names, problems: list, dims: dict | None = None, outer: "Emitter | None" = None):
        self.names = names
        self.problems = problems  # shared with the bodies' emitters: every node that has no form
        self.dims: dict[str, tuple[str, int]] = dict(dims or {})
        self.outer = outer
        self.nodes: list = []
        self.initializers: list = []
        self.values: dict[int, object] = {}
        self.produced: set[str] = set()  # value names this graph's nodes compute
        self.used: dict[int, set[int]] = {}  # tuple node id -> the output indices something reads
        self.current = None  # the graphc node being exported (names and scopes of the ONNX nodes)
        self.types: dict[str, tuple] = {}  # value name -> (shape, dtype) of the graphc values computed here
        self._consts: dict[tuple, str] = {}
        self._shapes: dict[tuple, str] = {}

    # -- names ------------------------------------------------------------------------------------
    def hint(self, suffix: str = "") -> str:
        n = self.current
        if n is None:
            return suffix or "v"
        base = n.name or f"{n.op}_{n.id}"
        base = f"{n.scope}/{base}" if n.scope and not n.name else base
        return f"{base}{'/' + suffix if suffix else ''}"

    def name_of(self, node) -> str:
        """The ONNX value name of a single-output graphc node already exported."""
        v = self.values.get(node.id)
        if v is None and self.outer is not None:
            return self.outer.name_of(node)
        return v

    def outputs_of(self, node) -> list:
        """The ONNX value names of a node with several outputs (None where an output is not written)."""
        return self.values[node.id]

    def bind(self, node, value) -> None:
        self.values[node.id] = value

    def body(self, dims: dict) -> "Emitter":
        """An emitter for a sub-graph of this one (a loop body): names and problems are shared, outer
        values are read by name."""
        return Emitter(self.names, self.problems, {**self.dims, **dims}, outer=self)

    # -- the walk -----------------------------------------------------------------------------------
    def emit(self, nodes) -> None:
        """Export `nodes` (topological order; inputs and parameters already bound) with their ops'
        rules; a node without a form is recorded in `problems` and the walk goes on, so one error
        can list them all."""
        for node in nodes:
            if node.is_tuple:
                continue
            for x in node.inputs:
                if x.is_tuple:
                    self.used.setdefault(x.id, set()).add(node.attrs.get("index"))
        for node in nodes:
            if node.id in self.values:
                continue
            self.current = node
            if node.is_const:
                self.bind(node, self.const(node.attrs["value"]))
                continue
            rule = node.opdef.lowerings.get("onnx")
            ins = [None if x.is_tuple else self.name_of(x) for x in node.inputs]
            try:
                if rule is None:
                    raise NoOnnxForm(no_rule_reason(node))
                out = rule(node, self, ins)
            except NoOnnxForm as exc:
                self.problems.append(Problem(node, str(exc)))
                out = [f"<{node.label}>"] * len(node.types) if node.is_tuple else f"<{node.label}>"
            self.bind(node, out)
            for name, (shape, dtype) in zip(out if node.is_tuple else [out], node.types):
                if name in self.produced:  # the value's type, for value_info (checked by the full check)
                    self.types.setdefault(name, (shape, dtype))
        self.current = None

    # -- writing ------------------------------------------------------------------------------------
    def op(self, op_type: str, inputs, n_out: int = 1, **attrs):
        """Write one ONNX node; returns its output name (a list of names when n_out > 1). Attributes
        that are None are left out; the empty string in inputs is an omitted optional input."""
        outs = [self.names.fresh(self.hint(op_type if n_out == 1 else f"{op_type}{i}")) for i in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        scope = self.current.scope if self.current is not None else ""
        node_name = self.names.fresh(f"{scope}/{op_type}" if scope else op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=node_name, **attrs))
        self.produced.update(outs)
        return outs[0] if n_out == 1 else outs

    def const(self, value, dtype: str | None = None) -> str:
        """A Constant node holding `value` (a NumPy array or scalar, in `dtype` if given); equal small
        constants share one node."""
        arr = np.asarray(value, dtype=dtype) if dtype else np.asarray(value)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 64 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.names.fresh(self.hint("const"))
        tensor = numpy_helper.from_array(np.array(arr, order="C"), name)
        self.nodes.append(helper.make_node("Constant", [], [name], name=self.names.fresh(name), value=tensor))
        self.produced.add(name)
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values) -> str:
        """A 1-D int64 constant (axes, sizes, pads, shapes)."""
        return self.const(np.asarray(list(values), dtype=np.int64).reshape(-1))

    def initializer(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        self.names.taken.add(name)
        return name

    def dim(self, symbol: str) -> str:
        """A 1-D int64 tensor [size of `symbol`], read from a value that has it."""
        if symbol not in self.dims:
            raise NoOnnxForm(f"its shape has the dimension {symbol!r}, which no input of the graph has")
        value, axis = self.dims[symbol]
        return self.op("Shape", [value], start=axis, end=axis + 1)

    def shape(self, shape) -> str:
        """A 1-D int64 tensor of a graphc shape; symbolic dims are read from the inputs at run time."""
        key = tuple(shape)
        if key in self._shapes:
            return self._shapes[key]
        if all(isinstance(d, int) for d in shape):
            name = self.ints(shape)
        else:
            parts, run = [], []
            for d in shape:
                if isinstance(d, int):
                    run.append(d)
                    continue
                if run:
                    parts.append(self.ints(run))
                    run = []
                parts.append(self.dim(d))
            if run:
                parts.append(self.ints(run))
            name = parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=0)
        self._shapes[key] = name
        return name

    def finish_outputs(self, named) -> list:
        """Give each (output name, value name) pair its name: the node that computes a value here is
        renamed the first time, an input, initializer, outer value or repeat gets an Identity. The
        wanted names are reserved already (Names.taken). Returns the output names."""
        renames: dict[str, str] = {}
        out = []
        for want, have in named:
            if have in self.produced and have not in renames and want not in self.produced:
                renames[have] = want
            else:
                self.nodes.append(
                    helper.make_node("Identity", [renames.get(have, have)], [want], name=self.names.fresh(want))
                )
            self.produced.add(want)
            out.append(want)
        for have in renames:
            self.types.pop(have, None)  # an output: typed as the graph's output
        if renames:
            for n in self.nodes:
                for i, v in enumerate(n.output):
                    if v in renames:
                        n.output[i] = renames[v]
                for i, v in enumerate(n.input):
                    if v in renames:
                        n.input[i] = renames[v]
                for a in n.attribute:  # sub-graphs read outer values by name
                    if a.type == a.GRAPH:
                        _rename_in_graph(a.g, renames)
        return out


def value_infos(e: "Emitter", outputs) -> list:
    """The typed intermediate values of an emitter's graph (not its outputs)."""
    skip = set(outputs)
    return [value_info(name, shape, dtype) for name, (shape, dtype) in e.types.items() if name not in skip]


def _rename_in_graph(g, renames) -> None:
    for n in g.node:
        for i, v in enumerate(n.input):
            if v in renames:
                n.input[i] = renames[v]
        for a in n.attribute:
            if a.type == a.GRAPH:
                _rename_in_graph(a.g, renames)
    for o in g.output:
        if o.name in renames:
            o.name = renames[o.name]


class Problem:
    """A node an export cannot write, and why."""

    def __init__(self, node, reason: str):
        self.node, self.reason = node, reason

    def __str__(self):
        where = f" (declared at {self.node.location})" if self.node.location else ""
        return f"{self.node.label}: {self.node.op}{where}: {self.reason}"


def no_rule_reason(node) -> str:
    """Why an op without an export rule has no ONNX form, in the words a user can act on."""
    opdef = node.opdef
    if opdef.random:
        return (
            "it draws random numbers with graphc's generator, which ONNX cannot reproduce; "
            "export the evaluation graph (training=False: dropout off)"
        )
    if opdef.external:
        return "its value depends on other processes' data"
    if node.is_backward:
        return "it is part of a backward pass (a gradient op); export the forward graph's outputs"
    return "the op has no ONNX form"
