"""Elementwise ops with NumPy broadcasting: arithmetic, math functions, comparisons, where, cast."""

import numpy as np

from graphc.errors import DTypeError
from graphc.ir import dtypes, shapes
from graphc.ir.node import Node
from graphc.ops.registry import F, Kind, OpDef, apply, as_node, const_value, error, is_tracing, register

__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "exp",
    "log",
    "sqrt",
    "abs",
    "sign",
    "erf",
    "sin",
    "cos",
    "maximum",
    "minimum",
    "where",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "equal",
    "not_equal",
    "logical_not",
    "cast",
    "square",
]


def _infer_elementwise(float_only=False, out_dtype=None):
    def infer(inputs, attrs):
        dts = {x.dtype for x in inputs if out_dtype != "cond" or x is not inputs[0]}
        if len(dts) > 1:
            raise DTypeError(f"dtypes differ: {', '.join(sorted(dts))}")
        if out_dtype == "cond" and inputs[0].dtype != "bool":
            raise DTypeError(f"condition must be bool, got {inputs[0].dtype}")
        dt = dts.pop()
        if float_only and not dtypes.is_float(dt):
            raise DTypeError(f"needs a float input, got {dt}; cast it first")
        shape = shapes.broadcast(*(x.shape for x in inputs))
        return shape, ("bool" if out_dtype == "bool" else dt)

    return infer


def _declare(name, ref, vjp, scalar, float_only=False, out_dtype=None, kind=None, doc="", **facts):
    kind = kind or (Kind.BROADCAST if name in _BINARY_NAMES else Kind.ELEMENTWISE)
    register(
        OpDef(
            name,
            kind,
            _infer_elementwise(float_only, out_dtype),
            lambda node, args, ctx, f=ref: f(*args),
            vjp,
            scalar,
            doc=doc,
            **facts,
        )
    )


_BINARY_NAMES = {
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    "where",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "equal",
    "not_equal",
}


def coerce(op: str, *xs) -> list[Node]:
    """Nodes of one dtype: Python scalars adopt their partner's dtype, others are promoted."""
    nodes = [x for x in xs if isinstance(x, Node)]
    if not nodes:
        error(DTypeError, op, f"needs at least one graph node, got {xs!r}")
    graphs = {id(n.graph) for n in nodes}
    if len(graphs) > 1 and not is_tracing():  # a body being traced captures nodes of enclosing graphs
        from graphc.errors import GraphStructureError

        error(GraphStructureError, op, "inputs belong to different graphs")
    target = nodes[0].dtype
    for n in nodes[1:]:
        target = dtypes.promote(target, n.dtype)
    out = []
    for x in xs:
        if not isinstance(x, Node):
            if isinstance(x, float) and not dtypes.is_float(target):
                target = dtypes.DEFAULT_FLOAT
    for x in xs:
        x = x if isinstance(x, Node) else as_node(x, dtype=target, like=nodes[0])
        out.append(x if x.dtype == target else cast(x, target))
    return out


def _binary(op):
    def f(a, b):
        return apply(op, coerce(op, a, b))

    f.__name__ = op
    return f


def _unary(op):
    def f(x):
        x = as_node(x) if not isinstance(x, Node) else x
        return apply(op, [x])

    f.__name__ = op
    return f


def _sum_to(g, like):
    return F.sum_to(g, like.shape)


# -- arithmetic -----------------------------------------------------------------------------
def _vjp_add(n, g, needs):
    a, b = n.inputs
    return [_sum_to(g, a) if needs[0] else None, _sum_to(g, b) if needs[1] else None]


def _vjp_sub(n, g, needs):
    a, b = n.inputs
    return [_sum_to(g, a) if needs[0] else None, _sum_to(-g, b) if needs[1] else None]


def _vjp_mul(n, g, needs):
    a, b = n.inputs
    return [_sum_to(g * b, a) if needs[0] else None, _sum_to(g * a, b) if needs[1] else None]


def _vjp_div(n, g, needs):
    a, b = n.inputs
    return [_sum_to(g / b, a) if needs[0] else None, _sum_to(-g * n / b, b) if needs[1] else None]


def _vjp_pow(n, g, needs):
    a, b = n.inputs
    ga = gb = None
    if needs[0]:
        bv = const_value(b)
        if bv is not None and np.all(bv != 0):
            ga = _sum_to(g * b * F.pow(a, b - 1), a)
        else:
            # Where b == 0 the gradient is 0 (as in PyTorch), also at a == 0, where b * a**(b-1)
            # would be 0 * inf. The base is 1 there, so the power stays finite and its own
            # gradient (second order) too.
            base = where(equal(b, 0), 1, a)
            ga = _sum_to(g * b * F.pow(base, b - 1), a)
    if needs[1]:
        safe = where(greater(a, 0), a, 1)
        gb = _sum_to(g * n * log(safe), b)
    return [ga, gb]


_declare("add", np.add, _vjp_add, "({0} + {1})", commutative=True)
_declare("sub", np.subtract, _vjp_sub, "({0} - {1})")
_declare("mul", np.multiply, _vjp_mul, "({0} * {1})", commutative=True)
_declare("div", np.divide, _vjp_div, "({0} / {1})", float_only=True)
_declare("pow", np.power, _vjp_pow, "({0} ** {1})", float_only=True)
_declare("neg", np.negative, lambda n, g, needs: [-g], "(-{0})")

add, sub, mul, pow = _binary("add"), _binary("sub"), _binary("mul"), _binary("pow")
neg = _unary("neg")


def div(a, b):
    """a / b; integer operands are cast to float32 first (true division)."""
    xs = coerce("div", a, b)
    if not dtypes.is_float(xs[0].dtype):
        xs = [cast(x, dtypes.DEFAULT_FLOAT) for x in xs]
    return apply("div", xs)


def square(x):
    return x * x


# -- math functions -------------------------------------------------------------------------
def _erf_ref(x):
    from math import erf as _erf

    return np.vectorize(_erf, otypes=[x.dtype])(x) if x.size else x.copy()


_declare("exp", np.exp, lambda n, g, needs: [g * n], "math.exp({0})", float_only=True, sign="positive")
_declare("log", np.log, lambda n, g, needs: [g / n.inputs[0]], "math.log({0})", float_only=True)
_declare("sqrt", np.sqrt, lambda n, g, needs: [g * 0.5 / n], "math.sqrt({0})", float_only=True, sign="nonnegative")
_declare("abs", np.abs, lambda n, g, needs: [g * sign(n.inputs[0])], "abs({0})", sign="nonnegative")
_declare("sign", np.sign, None, "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else 0.0))")
_declare(
    "erf",
    _erf_ref,
    lambda n, g, needs: [g * (2.0 / np.sqrt(np.pi)) * exp(-(n.inputs[0] * n.inputs[0]))],
    "math.erf({0})",
    float_only=True,
)

_declare("sin", np.sin, lambda n, g, needs: [g * cos(n.inputs[0])], "math.sin({0})", float_only=True)
_declare("cos", np.cos, lambda n, g, needs: [-g * sin(n.inputs[0])], "math.cos({0})", float_only=True)

exp, log, sqrt, abs, erf = _unary("exp"), _unary("log"), _unary("sqrt"), _unary("abs"), _unary("erf")
sin, cos = _unary("sin"), _unary("cos")


def sign(x):
    """-1, 0 or 1 in x's dtype; its gradient is zero."""
    return apply("sign", [x])


# -- selection ------------------------------------------------------------------------------
def _vjp_max_min(pick):
    def vjp(n, g, needs):
        a, b = n.inputs
        take_a = pick(a, b)  # ties go to a
        zero = 0
        return [
            _sum_to(where(take_a, g, zero), a) if needs[0] else None,
            _sum_to(where(take_a, zero, g), b) if needs[1] else None,
        ]

    return vjp


_declare("maximum", np.maximum, _vjp_max_min(lambda a, b: greater_equal(a, b)), "max({0}, {1})")
_declare("minimum", np.minimum, _vjp_max_min(lambda a, b: less_equal(a, b)), "min({0}, {1})")
maximum, minimum = _binary("maximum"), _binary("minimum")


def _vjp_where(n, g, needs):
    c, a, b = n.inputs
    zero = 0
    return [
        None,
        _sum_to(where(c, g, zero), a) if needs[1] else None,
        _sum_to(where(c, zero, g), b) if needs[2] else None,
    ]


_declare("where", np.where, _vjp_where, "({1} if {0} else {2})", out_dtype="cond")


def where(cond, a, b):
    """Elementwise select: a where cond is true, else b (all broadcast together)."""
    cond = as_node(cond) if not isinstance(cond, Node) else cond
    if cond.dtype != "bool":
        error(DTypeError, "where", f"condition must be bool, got {cond.type_str}")
    if not isinstance(a, Node) and not isinstance(b, Node):
        a = as_node(a, like=None, dtype=dtypes.DEFAULT_FLOAT if isinstance(a, float) else None)
    a, b = coerce("where", a, b)
    return apply("where", [cond, a, b])


# -- comparisons ----------------------------------------------------------------------------
_COMPARISONS = {
    "less": (np.less, "<"),
    "less_equal": (np.less_equal, "<="),
    "greater": (np.greater, ">"),
    "greater_equal": (np.greater_equal, ">="),
    "equal": (np.equal, "=="),
    "not_equal": (np.not_equal, "!="),
}
for _name, (_f, _sym) in _COMPARISONS.items():
    _declare(_name, _f, None, f"({{0}} {_sym} {{1}})", out_dtype="bool")
less, less_equal = _binary("less"), _binary("less_equal")
greater, greater_equal = _binary("greater"), _binary("greater_equal")
equal, not_equal = _binary("equal"), _binary("not_equal")

_declare("logical_not", np.logical_not, None, "(not {0})", out_dtype="bool")


def logical_not(x):
    if x.dtype != "bool":
        error(DTypeError, "logical_not", f"needs a bool input, got {x.type_str}")
    return apply("logical_not", [x])


# -- cast -----------------------------------------------------------------------------------
def _infer_cast(inputs, attrs):
    return inputs[0].shape, attrs["dtype"]


def _vjp_cast(n, g, needs):
    x = n.inputs[0]
    return [cast(g, x.dtype) if dtypes.is_float(x.dtype) else None]


register(
    OpDef(
        "cast",
        Kind.ELEMENTWISE,
        _infer_cast,
        lambda node, args, ctx: args[0].astype(node.dtype),
        _vjp_cast,
        scalar=lambda attrs: f"np.{attrs['dtype'] if attrs['dtype'] != 'bool' else 'bool_'}({{0}})",
        doc="convert to another dtype",
    )
)


def cast(x, dtype):
    """Convert x to dtype; a no-op (x itself) when it already has it."""
    dtype = dtypes.canonical(dtype)
    x = as_node(x) if not isinstance(x, Node) else x
    if x.dtype == dtype:
        return x
    return apply("cast", [x], {"dtype": dtype})
