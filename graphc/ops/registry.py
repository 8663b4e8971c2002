"""The op table. Each op is declared once, as an OpDef, in its module under graphc/ops/.

An OpDef carries everything the compiler needs: the shape/dtype rule, the NumPy reference,
the vector-Jacobian rule (written in graph ops), the fusion kind and the lowerings. Passes,
fusion and backends read these fields; none of them lists ops by name.
"""

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, GraphcError, GraphStructureError, ShapeError, where
from graphc.ir import dtypes
from graphc.ir.graph import _current_backward, current_graph
from graphc.ir.location import user_location
from graphc.ir.node import Attrs, Node, TupleType
from graphc.ops.rows import broadcast_rows


class Kind(enum.Enum):
    """Fusion kinds, after TVM's FuseOps."""

    SOURCE = "source"  # input, param, const: no computation
    ELEMENTWISE = "elementwise"  # same-shape map, one output element per input element
    BROADCAST = "broadcast"  # elementwise with broadcasting inputs, or broadcast_to
    INJECTIVE = "injective"  # each output element reads one input element (reshape, transpose, slice)
    REDUCTION = "reduction"  # reduces along axes (sum, max, softmax)
    OUT_FUSABLE = "output-fusable"  # matmul, conv: elementwise consumers fuse into their output
    OPAQUE = "opaque"  # fuses with nothing


@dataclass
class OpDef:
    """Everything about one op.

    infer(inputs, attrs) -> (shape, dtype), or a graphc.ir.node.TupleType for an op with
        several outputs: raises ShapeError/DTypeError/AttributeValueError
        with a message that does not repeat the op name (the caller prefixes it).
    ref(node, args, ctx) -> ndarray (a tuple of arrays for an op with several outputs): the
        NumPy reference; ctx.concrete(shape) binds symbols,
        ctx.step is the run counter (random ops), node.attrs holds the attributes.
    vjp(node, g, needs) -> one gradient node (or None) per input; needs[i] says whether
        input i's gradient is wanted. None for ops that are not differentiable. For an op with
        several outputs (infer returns a TupleType), g is a list of one cotangent (or None) per
        output; for an input with several outputs, the rule gives a tuple of one gradient (or
        None) per output of that input.
    scalar: for elementwise ops, a Python expression over {0}, {1}, ... in `math` functions,
        evaluated per element (or a function of the attrs returning one); it is the op's
        lowering for every loop-generating backend. A template may repeat {0}: backends bind
        each operand to a local first.
    lowerings: backend name -> backend-specific kernel builder, for non-elementwise ops.
    commutative / sign: algebraic facts that rewrites may rely on (see passes/).
    random: draws random numbers (seeded from its attributes, the step and the loop indices).
    rows: rows(node, axes) -> the output's batch axis from the inputs' (graphc.ops.rows), for ops
        that keep the rows of a batch apart; ops with a `scalar` need none.
    external: its value depends on more than its inputs and attributes (a collective's is the
        other processes' data too). `pure` is False for random and external ops: they are never
        folded, merged with another, hoisted out of a loop or fused.
    """

    name: str
    kind: Kind
    infer: Callable
    ref: Callable
    vjp: Callable | None = None
    scalar: str | Callable | None = None
    lowerings: dict = field(default_factory=dict)
    random: bool = False
    external: bool = False
    commutative: bool = False  # swapping the two operands changes no bit of the result (CSE)
    reads_values: bool = True  # False: only the inputs' shapes are read (no saved activation)
    takes_tuple: bool = False  # True for ops that read a many-output node (the projection tuple_get)
    sign: str | None = None  # "positive" or "nonnegative": true of every output (for rewrites)
    rows: Callable | None = None  # the batch axis of the output from the inputs' (graphc.ops.rows)
    doc: str = ""

    @property
    def pure(self) -> bool:
        """A function of the inputs and attributes alone: foldable, mergeable, movable."""
        return not (self.random or self.external)

    @property
    def nonnegative(self) -> bool:
        return self.sign in ("positive", "nonnegative")

    @property
    def differentiable(self) -> bool:
        return self.vjp is not None

    def row_rule(self) -> Callable | None:
        """How the batch rows go through the op (graphc.ops.rows): its own rule, broadcasting for
        an op with a per-element expression, None (rows mixed) otherwise."""
        if self.rows is not None:
            return self.rows
        return broadcast_rows if self.scalar is not None else None

    def scalar_expr(self, attrs) -> str | None:
        """The elementwise expression template, with attributes (alpha, dtype) filled in."""
        return self.scalar(attrs) if callable(self.scalar) else self.scalar


_REGISTRY: dict[str, OpDef] = {}


class _OpFunctions:
    """The op library's public functions (graphc.ops.api), for gradient rules and builders that
    call other ops: `F.mul(a, b)`. Bound by api once every op module is imported, so op modules
    import the registry, never api (no import cycle through api)."""

    __slots__ = ("_api",)

    def __init__(self):
        self._api = None

    def bind(self, api) -> None:
        self._api = api

    def __getattr__(self, name):
        api = object.__getattribute__(self, "_api")
        if api is None:
            raise GraphcError(f"the op library is still loading: graphc.ops.api.{name} is not bound yet")
        return getattr(api, name)


F = _OpFunctions()


def register(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name!r} is declared twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get(name: str) -> OpDef:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphcError(f"unknown op {name!r}") from None


def all_ops() -> dict[str, OpDef]:
    return dict(_REGISTRY)


def lowering(op: str, backend: str):
    """Decorator: register `fn` as `op`'s lowering for `backend` (kept beside the op's OpDef)."""

    def deco(fn):
        get(op).lowerings[backend] = fn
        return fn

    return deco


def apply(op: str, inputs: Sequence[Node], attrs: dict | None = None, name: str | None = None) -> Node:
    """Create a node of `op`: infers its type, or raises an error naming op, shapes and line.

    The node goes to the innermost body being traced (graphc.ir.subgraph.trace), which captures
    inputs from enclosing graphs; elsewhere to the inputs' graph (or the `with` block's)."""
    opdef = get(op)
    attrs = Attrs(attrs)
    loc = None if _current_backward() is not None else user_location()
    for i, x in enumerate(inputs):
        if not isinstance(x, Node):
            raise GraphcError(f"{op}: input {i} must be a graph node, got {type(x).__name__} {x!r:.60}" + where(loc))
        if x.is_tuple and not opdef.takes_tuple:
            raise GraphStructureError(
                f"{op}: input {i} ({x.label}: {x.type_str}) has several outputs; read one with "
                f"graphc.tuple_get(node, index)" + where(loc)
            )
    graph = _target_graph(inputs[0].graph if inputs else None)
    inputs = [graph.own(x, op, loc) for x in inputs]
    try:
        typ = opdef.infer(list(inputs), attrs)
    except (ShapeError, DTypeError, AttributeValueError) as exc:
        types = ", ".join(x.type_str for x in inputs)
        raise type(exc)(f"{op}({types}): {exc}" + where(loc)) from None
    if isinstance(typ, TupleType):
        return graph._add(op, inputs, attrs, typ, None, name, loc)
    shape, dtype = typ
    return graph._add(op, inputs, attrs, shape, dtype, name, loc)


def is_tracing() -> bool:
    """Is a body being traced (graphc.ir.subgraph.trace)? Then nodes of enclosing graphs may meet."""
    current = current_graph(required=False)
    return current is not None and current.tracing


def _target_graph(graph):
    """The graph new nodes go to: the body being traced, if any, else `graph` (or the `with` block's)."""
    current = current_graph(required=graph is None)
    if current is not None and current.tracing:
        return current
    return graph if graph is not None else current


def error(exc_type, op: str, message: str):
    """Raise exc_type('op: message (declared at file:line)') from a user-facing builder."""
    raise exc_type(f"{op}: {message}" + where(user_location()))


def checked_axis(op: str, axis, x: Node, rank: int | None = None, what: str = "input") -> int:
    """axis made non-negative for rank (default x's), or an error naming op, axis and x."""
    from graphc.ir import shapes

    try:
        return shapes.normalize_axis(axis, x.ndim if rank is None else rank)
    except ShapeError as exc:
        error(AttributeValueError, op, f"{exc} ({what} {x.type_str})")


def checked_axes(op: str, axes, x: Node, what: str = "input") -> tuple[int, ...]:
    """axes (None: all; an int; a tuple or list of ints) as sorted, unique, non-negative axes of x,
    or an error naming op, the axes and x."""
    from graphc.ir import shapes

    try:
        return shapes.normalize_axes(axes, x.ndim)
    except ShapeError as exc:
        error(AttributeValueError, op, f"{exc} ({what} {x.type_str})")


def axis_or_axes(op: str, axis, axes):
    """The axes given as `axis=` or as its alias `axes=` (None: not given); both is an error."""
    if axes is None:
        return axis
    if axis is not None:
        error(AttributeValueError, op, f"give axis or its alias axes, not both (axis={axis!r}, axes={axes!r})")
    return axes


# -- helpers shared by op modules -----------------------------------------------------------


def as_node(x, like: Node | None = None, dtype: str | None = None) -> Node:
    """A node for x: nodes pass through, Python/NumPy values become constants.

    Python scalars are weakly typed: they take `like`'s dtype (int and float alike), unless
    a float scalar meets an integer node, where they become float32.
    """
    if isinstance(x, Node):
        return x
    if isinstance(x, bool | int | float | np.generic) and dtype is None and like is not None:
        value = np.asarray(x)
        if value.dtype.kind == "f" and not dtypes.is_float(like.dtype):
            dtype = dtypes.DEFAULT_FLOAT
        elif value.dtype.kind == "b" and like.dtype != "bool":
            dtype = like.dtype
        else:
            dtype = like.dtype
    return constant(x, dtype, graph=like.graph if like is not None else None)


def constant(value, dtype: str | None = None, graph=None) -> Node:
    """A constant node (scalars print inline in the text form). A value that `dtype` cannot
    hold (2**40 as int32, inf or 1.5 as an integer, 1e39 as float32) is a DTypeError."""
    arr = checked_value("const", value, dtype)
    graph = _target_graph(graph)
    loc = None if _current_backward() is not None else user_location()
    return graph._add("const", (), Attrs({"value": arr}), arr.shape, arr.dtype.name, None, loc)


def checked_value(op: str, value, dtype: str | None) -> np.ndarray:
    """value as a C-ordered array of dtype (default: float32 for floats, int64 for integers,
    bool); a value the dtype cannot hold, or no number at all, is a DTypeError naming op."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        error(DTypeError, op, f"cannot make an array from {value!r:.80}: {exc}")
    if dtype is None:
        kind = arr.dtype.kind
        dtype = dtypes.DEFAULT_FLOAT if kind == "f" else "int64" if kind in "iu" else "bool" if kind == "b" else None
        if dtype is None and kind == "O" and all(isinstance(v, int) for v in arr.flat):
            dtype = "int64"  # Python ints past int64: refused below, naming the value
        if dtype is None:
            error(DTypeError, op, f"cannot make a constant from {value!r:.80} (dtype {arr.dtype})")
    dtype = dtypes.canonical(dtype)
    bad = dtypes.unfit(arr, dtype)
    if bad is not None:
        error(DTypeError, op, f"value {bad} does not fit {dtype}")
    return np.array(arr, dtype=dtype, order="C")  # a copy: 0-d stays 0-d


def const_value(node: Node):
    """The NumPy value of a constant node, else None."""
    return node.attrs["value"] if node.is_const else None


def _infer_source(inputs, attrs):  # never called: sources are built by Graph methods
    raise ShapeError("source nodes are made by Graph.input/param and constant()")


def _ref_input(node, args, ctx):
    return ctx.feeds[node.name]


def _ref_param(node, args, ctx):
    return ctx.params[node.name]


def _ref_const(node, args, ctx):
    return node.attrs["value"]


for _name, _ref in (("input", _ref_input), ("param", _ref_param), ("const", _ref_const)):
    register(OpDef(_name, Kind.SOURCE, _infer_source, _ref, doc=f"graph {_name}"))
