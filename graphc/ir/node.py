"""Immutable IR nodes. A node is one op applied to input nodes; it is also the value it makes."""

from collections.abc import Mapping

import numpy as np

from graphc.errors import SymbolicValueError, where
from graphc.ir import dtypes, shapes
from graphc.ir.location import user_location
from graphc.ir.phase import Phase


class Attrs(Mapping):
    """An immutable, hashable attribute mapping (tuples, not lists; arrays read-only)."""

    __slots__ = ("_d", "_key")

    def __init__(self, d=None):
        self._d = {k: _freeze(v) for k, v in sorted((d or {}).items())}
        self._key = None

    def __getitem__(self, k):
        return self._d[k]

    def __iter__(self):
        return iter(self._d)

    def __len__(self):
        return len(self._d)

    def key(self):
        """A hashable summary, used by CSE and kernel hashing."""
        if self._key is None:
            self._key = tuple((k, _hashable(v)) for k, v in self._d.items())
        return self._key

    def __repr__(self):
        return f"Attrs({self._d!r})"


def _freeze(v):
    if isinstance(v, list | tuple):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.ndarray):
        v = v.copy()
        v.setflags(write=False)
        return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _hashable(v):
    if hasattr(v, "content_key"):  # a sub-graph: equal bodies hash equal (graphc.ir.subgraph)
        return ("subgraph", v.digest)
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, tuple):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, float) and v != v:
        return ("nan",)
    return v


class Node:
    """One value of a graph: `op(inputs, **attrs)` with a static shape and dtype.

    Nodes are immutable and compared by identity. Python operators build new nodes
    (`a + b`, `a @ b`, `a[1:]`, `a < b`), with a NumPy array or scalar on either side;
    `==` keeps its identity meaning, so use `graphc.equal` for an elementwise comparison.
    A node has no value while the graph is declared: `if node:` and NumPy functions
    (`np.exp(node)`) raise SymbolicValueError.

    `phase` (a graphc.ir.Phase) says whether the node is forward, backward or update work;
    a backward node's `grad_of` is the label of the forward value it differentiates (a string,
    for drawings and the text form). An op with several outputs makes a TupleNode instead.
    """

    __slots__ = (
        "graph",
        "id",
        "op",
        "inputs",
        "attrs",
        "shape",
        "dtype",
        "name",
        "scope",
        "location",
        "phase",
        "grad_of",
        "__weakref__",
    )

    is_tuple = False  # True for a TupleNode (an op with several outputs)

    def __init__(
        self,
        graph,
        id,
        op,
        inputs,
        attrs,
        shape,
        dtype,
        name=None,
        scope="",
        location=None,
        phase=Phase.FORWARD,
        grad_of=None,
    ):
        self._init(graph, id, op, inputs, attrs, name, scope, location, phase, grad_of)
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "dtype", dtype)

    def _init(self, graph, id, op, inputs, attrs, name, scope, location, phase, grad_of):
        if not isinstance(phase, Phase):
            raise TypeError(f"phase must be a graphc.ir.Phase, got {phase!r}")
        for slot, value in (
            ("graph", graph),
            ("id", id),
            ("op", op),
            ("inputs", tuple(inputs)),
            ("attrs", attrs if isinstance(attrs, Attrs) else Attrs(attrs)),
            ("name", name),
            ("scope", scope),
            ("location", location),
            ("phase", phase),
            ("grad_of", grad_of),
        ):
            object.__setattr__(self, slot, value)

    def __setattr__(self, key, value):
        raise AttributeError(f"graph nodes are immutable (tried to set {key!r})")

    # -- description -------------------------------------------------------------------
    # Source ops (no inputs, no computation) are told apart by these predicates, never by op name.
    @property
    def is_input(self) -> bool:
        """A graph input (fed at each run)."""
        return self.op == "input"

    @property
    def is_param(self) -> bool:
        """A parameter or state variable (its value lives in the graph's `values`)."""
        return self.op == "param"

    @property
    def is_const(self) -> bool:
        """A constant (its value is the `value` attribute)."""
        return self.op == "const"

    @property
    def is_source(self) -> bool:
        """An input, parameter or constant: a value no op computes."""
        return self.op in ("input", "param", "const")

    @property
    def is_backward(self) -> bool:
        """True for nodes built by autodiff (phase BACKWARD); `grad_of` names what they differentiate."""
        return self.phase is Phase.BACKWARD

    @property
    def types(self) -> tuple:
        """((shape, dtype), ...): one entry per output (one for a single-output node)."""
        return ((self.shape, self.dtype),)

    @property
    def role(self) -> str:
        """input, param, state, const, forward, backward or update: what drawings colour by."""
        if self.is_param:
            return "param" if self.attrs["trainable"] else "state"
        if self.is_input or self.is_const:
            return self.op
        return self.phase.value

    @property
    def opdef(self):
        return _OPS.opdef(self.op)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def type_str(self) -> str:
        return type_text(self.shape, self.dtype)

    @property
    def label(self) -> str:
        """The name a user gave (input/param name), else op#id."""
        return self.name or f"{self.op}#{self.id}"

    def __repr__(self):
        where = f" at {self.location}" if self.location else ""
        return f"<Node {self.label}: {self.type_str}{where}>"

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __bool__(self):
        used = user_location()
        raise SymbolicValueError(
            f"the truth value of graph node {self.label}{where(self.location)} is not known while declaring "
            f"a graph{f' (asked at {used})' if used else ''}; use graphc.where(cond, a, b) instead of if/and/or"
        )

    # -- NumPy: `ndarray op node` builds a node; NumPy functions on nodes are refused ------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # NumPy calls this for `array * node` (as np.multiply(array, node)) and for np.exp(node).
        # The operators become the node the reflected operator builds; everything else is refused,
        # since NumPy cannot compute with a value that does not exist yet.
        op = _UFUNC_OPERATORS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if op is not None and len(inputs) == 2:
            return getattr(self._ops(), op)(*inputs)
        raise _numpy_refused(ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}", self)

    def __array_function__(self, func, types, args, kwargs):
        raise _numpy_refused(func.__name__, self)

    def __array__(self, dtype=None, copy=None):
        raise _numpy_refused("asarray", self)

    # -- operators (delegated to the op library) ---------------------------------------
    def _ops(self):
        return _OPS.functions

    def __add__(self, o):
        return self._ops().add(self, o)

    def __radd__(self, o):
        return self._ops().add(o, self)

    def __sub__(self, o):
        return self._ops().sub(self, o)

    def __rsub__(self, o):
        return self._ops().sub(o, self)

    def __mul__(self, o):
        return self._ops().mul(self, o)

    def __rmul__(self, o):
        return self._ops().mul(o, self)

    def __truediv__(self, o):
        return self._ops().div(self, o)

    def __rtruediv__(self, o):
        return self._ops().div(o, self)

    def __pow__(self, o):
        return self._ops().pow(self, o)

    def __rpow__(self, o):
        return self._ops().pow(o, self)

    def __matmul__(self, o):
        return self._ops().matmul(self, o)

    def __rmatmul__(self, o):
        return self._ops().matmul(o, self)

    def __neg__(self):
        return self._ops().neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return self._ops().abs(self)

    def __lt__(self, o):
        return self._ops().less(self, o)

    def __le__(self, o):
        return self._ops().less_equal(self, o)

    def __gt__(self, o):
        return self._ops().greater(self, o)

    def __ge__(self, o):
        return self._ops().greater_equal(self, o)

    def __getitem__(self, index):
        return self._ops().getitem(self, index)

    @property
    def T(self):
        return self._ops().transpose(self)

    def sum(self, axis=None, keepdims=False):
        return self._ops().sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return self._ops().mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return self._ops().max(self, axis, keepdims)

    def reshape(self, *shape):
        return self._ops().reshape(self, shape[0] if len(shape) == 1 else shape)

    def astype(self, dtype):
        return self._ops().cast(self, dtype)


def type_text(shape, dtype) -> str:
    """f32[batch,3]: a dtype and shape as the text form writes them."""
    return f"{dtypes.SHORT[dtype]}{shapes.fmt(shape)}"


class TupleType:
    """The type of an op with several outputs: `items` is ((shape, dtype), ...), one per output.

    An OpDef's infer returns one for a tuple-valued op. It is deliberately not a tuple, so
    that code unpacking `shape, dtype = infer(...)` fails loudly instead of misreading it."""

    __slots__ = ("items",)

    def __init__(self, items):
        object.__setattr__(self, "items", tuple((tuple(s), d) for s, d in items))

    def __setattr__(self, key, value):
        raise AttributeError("TupleType is immutable")

    def __eq__(self, other):
        return isinstance(other, TupleType) and other.items == self.items

    def __hash__(self):
        return hash(self.items)

    def __len__(self):
        return len(self.items)

    def __repr__(self):
        return f"TupleType({', '.join(type_text(s, d) for s, d in self.items)})"


class TupleNode(Node):
    """A node with several outputs (split, scan): `types` holds one (shape, dtype) per output.

    Its outputs are read through the projection op (`graphc.ops.tuple_ops.tuple_get`); reading
    `.shape` or `.dtype` of the tuple itself is a GraphStructureError, as is feeding it to any
    op that does not take tuples. Its value (in the reference interpreter) is a Python tuple.
    """

    __slots__ = ("types",)
    is_tuple = True

    def __init__(
        self, graph, id, op, inputs, attrs, types, name=None, scope="", location=None, phase=Phase.FORWARD, grad_of=None
    ):
        self._init(graph, id, op, inputs, attrs, name, scope, location, phase, grad_of)
        items = types.items if isinstance(types, TupleType) else TupleType(types).items
        object.__setattr__(self, "types", items)

    def _misuse(self, what: str):
        from graphc.errors import GraphStructureError

        raise GraphStructureError(
            f"{self.label} ({self.op}) has {len(self.types)} outputs, so no single {what}; read one "
            f"output with graphc.tuple_get(node, index)" + where(self.location)
        )

    @property
    def shape(self):
        self._misuse("shape")

    @property
    def dtype(self):
        self._misuse("dtype")

    @property
    def ndim(self):
        self._misuse("rank")

    @property
    def type_str(self) -> str:
        return "(" + ", ".join(type_text(s, d) for s, d in self.types) + ")"


# NumPy ufuncs that are Python operators on nodes: `array OP node` runs ufunc(array, node).
_UFUNC_OPERATORS = {
    "add": "add",
    "subtract": "sub",
    "multiply": "mul",
    "divide": "div",
    "true_divide": "div",
    "power": "pow",
    "matmul": "matmul",
    "less": "less",
    "less_equal": "less_equal",
    "greater": "greater",
    "greater_equal": "greater_equal",
}


# NumPy names whose graphc op is named otherwise (for the hint).
_GRAPHC_NAMES = {"absolute": "abs", "negative": "neg", "amax": "max", "amin": "min", "power": "pow"}


def _numpy_refused(name: str, node: Node) -> SymbolicValueError:
    api = _OPS.functions
    name = _GRAPHC_NAMES.get(name, name)
    if name == "asarray":
        hint = "run the graph (gc.run, gc.compile) to get arrays"
    elif hasattr(api, name):
        hint = f"use gc.{name}(...) instead"
    else:
        hint = "use graphc's ops (gc.exp, gc.sum, ...) instead"
    used = user_location()
    return SymbolicValueError(
        f"NumPy's {name} was called on graph node {node.label}{where(node.location)}"
        f"{f' at {used}' if used else ''}; NumPy cannot compute with a node, which has no value while "
        f"the graph is declared: {hint}"
    )


class _OpLibrary:
    """The op library the IR delegates to, bound by graphc.ops when it is imported (bind_ops): the
    IR never imports graphc.ops, which builds on it."""

    opdef = None  # op name -> its OpDef
    functions = None  # the module of op functions the operators call (add, mul, getitem, ...)


_OPS = _OpLibrary()


def bind_ops(opdef, functions) -> None:
    """Called by graphc.ops on import: Node.opdef looks an op up with `opdef(name)`, and the
    operators (+, @, x[i], .sum(), ...) call the functions in `functions`."""
    _OPS.opdef, _OPS.functions = opdef, functions
