"""Import rules: ONNX's elementwise arithmetic, math, comparison, logic and activation ops.

Ops graphc has as one op map to it; the others (Elu, Selu, HardSigmoid, PRelu, Clip, ...) are
compositions of graphc ops, written here once.
"""

import math

from graphc.ir import dtypes
from graphc.onnx.importer_registry import onnx_op
from graphc.onnx.importer_values import DTYPES, type_name
from graphc.ops import api as F


def _float(n, i=0):
    x = n.input(i)
    if not dtypes.is_float(x.dtype):
        n.unsupported(f"input {i} has dtype {x.dtype}; graphc computes {n.op_type} in float32 or float64")
    return x


# -- arithmetic -------------------------------------------------------------------------------------
def _binary(op_type, fn, since=7):
    onnx_op(op_type, since=since)(lambda n: fn(n.input(0), n.input(1)))


_binary("Add", F.add)
_binary("Sub", F.sub)
_binary("Mul", F.mul)


@onnx_op("Div", since=7)
def _div(n):
    a, b = n.input(0), n.input(1)
    if dtypes.is_float(a.dtype):
        return F.div(a, b)
    # ONNX divides integers truncating towards zero, as a cast of the exact quotient does
    q = F.div(F.cast(a, "float64"), F.cast(b, "float64"))
    return F.cast(q, a.dtype)


@onnx_op("Pow", since=7)
def _pow(n):
    a, b = n.input(0), n.input(1)
    if dtypes.is_float(a.dtype):
        return F.pow(a, F.cast(b, a.dtype))
    return F.cast(F.pow(F.cast(a, "float64"), F.cast(b, "float64")), a.dtype)


def _variadic(op_type, fn, mean=False):
    @onnx_op(op_type, since=6)
    def rule(n):
        xs = n.inputs()
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return F.div(out, float(len(xs))) if mean else out


_variadic("Sum", F.add)
_variadic("Max", F.maximum)
_variadic("Min", F.minimum)
_variadic("Mean", F.add, mean=True)


@onnx_op("Neg", since=6)
def _neg(n):
    return F.neg(n.input(0))


@onnx_op("Abs", since=6)
def _abs(n):
    return F.abs(n.input(0))


@onnx_op("Sign", since=9)
def _sign(n):
    return F.sign(n.input(0))


@onnx_op("Reciprocal", since=6)
def _reciprocal(n):
    return F.div(1.0, _float(n))


def _unary_float(op_type, fn, since=6):
    onnx_op(op_type, since=since)(lambda n: fn(_float(n)))


for _op, _fn in (
    ("Sqrt", F.sqrt),
    ("Exp", F.exp),
    ("Log", F.log),
    ("Erf", F.erf),
    ("Relu", F.relu),
    ("Sigmoid", F.sigmoid),
    ("Tanh", F.tanh),
    ("Softplus", F.softplus),
):
    _unary_float(_op, _fn, since=1 if _op == "Softplus" else 6)
_unary_float("Sin", F.sin, since=7)
_unary_float("Cos", F.cos, since=7)
_unary_float("Tan", lambda x: F.sin(x) / F.cos(x), since=7)
_unary_float("Softsign", lambda x: x / (F.abs(x) + 1.0), since=1)
_unary_float("Mish", lambda x: x * F.tanh(F.softplus(x)), since=18)
_unary_float("HardSwish", lambda x: x * F.maximum(F.minimum(x * (1.0 / 6.0) + 0.5, 1.0), 0.0), since=14)


# -- activations with attributes --------------------------------------------------------------------
@onnx_op("LeakyRelu", since=6, attrs={"alpha"})
def _leaky_relu(n):
    return F.leaky_relu(_float(n), n.attr("alpha", 0.01))


@onnx_op("Elu", since=6, attrs={"alpha"})
def _elu(n):
    x, alpha = _float(n), n.attr("alpha", 1.0)
    return F.where(F.greater(x, 0.0), x, (F.exp(F.minimum(x, 0.0)) - 1.0) * alpha)


@onnx_op("Selu", since=6, attrs={"alpha", "gamma"})
def _selu(n):
    x = _float(n)
    alpha, gamma = n.attr("alpha", 1.67326319217681884765625), n.attr("gamma", 1.05070102214813232421875)
    return F.where(F.greater(x, 0.0), x, (F.exp(F.minimum(x, 0.0)) - 1.0) * alpha) * gamma


@onnx_op("Celu", since=12, attrs={"alpha"})
def _celu(n):
    x, alpha = _float(n), n.attr("alpha", 1.0)
    return F.maximum(x, 0.0) + F.minimum((F.exp(F.minimum(x, 0.0) / alpha) - 1.0) * alpha, 0.0)


@onnx_op("HardSigmoid", since=6, attrs={"alpha", "beta"})
def _hard_sigmoid(n):
    x = _float(n)
    return F.maximum(F.minimum(x * n.attr("alpha", 0.2) + n.attr("beta", 0.5), 1.0), 0.0)


@onnx_op("ThresholdedRelu", since=10, attrs={"alpha"})
def _thresholded_relu(n):
    x = _float(n)
    return F.where(F.greater(x, n.attr("alpha", 1.0)), x, 0.0)


@onnx_op("PRelu", since=7)
def _prelu(n):
    x, slope = _float(n), n.input(1)
    return F.where(F.less(x, 0.0), x * slope, x)


@onnx_op("Gelu", since=20, attrs={"approximate"})
def _gelu(n):
    x, approximate = _float(n), n.attr("approximate", "none")
    if approximate == "none":
        return F.gelu(x)
    if approximate != "tanh":
        n.unsupported(f"approximate={approximate!r} (graphc has 'none' and 'tanh')")
    inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
    return x * (F.tanh(inner) + 1.0) * 0.5


@onnx_op("Clip", since=6, attrs={"min", "max"})
def _clip_attrs(n):
    x = _float(n)
    return F.maximum(F.minimum(x, n.attr("max", 3.4028234663852886e38)), n.attr("min", -3.4028234663852886e38))


@onnx_op("Clip", since=11)
def _clip(n):
    x = n.input(0)
    if n.has(1):
        x = F.maximum(x, F.cast(n.input(1), x.dtype))
    if n.has(2):
        x = F.minimum(x, F.cast(n.input(2), x.dtype))
    return x


# -- comparisons and logic --------------------------------------------------------------------------
_binary("Equal", F.equal)
_binary("Less", F.less, since=9)
_binary("Greater", F.greater, since=9)
_binary("LessOrEqual", F.less_equal, since=12)
_binary("GreaterOrEqual", F.greater_equal, since=12)


def _bools(n):
    a, b = n.input(0), n.input(1)
    if a.dtype != "bool" or b.dtype != "bool":
        n.unsupported(f"needs bool inputs, got {a.dtype} and {b.dtype}")
    return a, b


@onnx_op("Not", since=1)
def _not(n):
    return F.logical_not(n.input(0))


@onnx_op("And", since=7)
def _and(n):
    a, b = _bools(n)
    return F.where(a, b, a)


@onnx_op("Or", since=7)
def _or(n):
    a, b = _bools(n)
    return F.where(a, a, b)


@onnx_op("Xor", since=7)
def _xor(n):
    a, b = _bools(n)
    return F.not_equal(a, b)


@onnx_op("Where", since=9)
def _where(n):
    return F.where(n.input(0), n.input(1), n.input(2))


@onnx_op("IsNaN", since=9)
def _isnan(n):
    x = _float(n)
    return F.not_equal(x, x)


@onnx_op("IsInf", since=10, attrs={"detect_negative", "detect_positive"})
def _isinf(n):
    x = _float(n)
    neg, pos = n.attr("detect_negative", 1), n.attr("detect_positive", 1)
    if neg and pos:
        return F.equal(F.abs(x), math.inf)
    if pos:
        return F.equal(x, math.inf)
    if neg:
        return F.equal(x, -math.inf)
    return F.full_like(x, False, "bool")


# -- types and identities ---------------------------------------------------------------------------
@onnx_op("Cast", since=6, attrs={"to", "saturate", "round_mode"})
def _cast(n):
    to = n.attr("to")
    if to not in DTYPES:
        n.unsupported(f"to={type_name(to)}; graphc has {', '.join(DTYPES.values())}")
    return F.cast(n.input(0), DTYPES[to])


@onnx_op("CastLike", since=15, attrs={"saturate", "round_mode"})
def _cast_like(n):
    return F.cast(n.input(0), n.input(1).dtype)


@onnx_op("Identity", since=1)
def _identity(n):
    return n.input(0)


@onnx_op("Dropout", since=7, attrs={"ratio", "is_test", "seed"})
def _dropout(n):
    """Inference (or a ratio of 0): the identity, and a mask of ones. graphc imports evaluation graphs:
    training mode with a ratio above 0 draws a random mask, which no import can reproduce."""
    if n.has(2) and bool(n.numbers(2, "training_mode").reshape(-1)[0]):
        ratio = float(n.numbers(1, "ratio").reshape(-1)[0]) if n.has(1) else 0.5
        if ratio != 0.0:
            n.unsupported("training_mode=True (graphc imports inference graphs; train with graphc.nn's dropout)")
    x = n.input(0)
    return [x, F.full_like(x, True, "bool") if n.wants_output(1) else None]
