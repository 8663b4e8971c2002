"""Activations: relu, leaky_relu, sigmoid, tanh, softplus, gelu; softmax and log_softmax."""

import math

import numpy as np

from graphc.errors import AttributeValueError, DTypeError
from graphc.ir import dtypes, shapes
from graphc.ops.registry import F, Kind, OpDef, apply, checked_axis, error, register

__all__ = ["relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu", "softmax", "log_softmax"]


def _infer_float(inputs, attrs):
    x = inputs[0]
    if not dtypes.is_float(x.dtype):
        raise DTypeError(f"needs a float input, got {x.dtype}")
    if "axis" in attrs:
        shapes.normalize_axis(attrs["axis"], x.ndim, "axis")
    return x.shape, x.dtype


def _stable_sigmoid(x):
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _gelu(x):
    from math import erf

    e = np.vectorize(erf, otypes=[x.dtype])(x / math.sqrt(2.0)) if x.size else x
    return 0.5 * x * (1.0 + e)


def _vjp_gelu(n, g, needs):
    x = n.inputs[0]
    cdf = 0.5 * (1.0 + F.erf(x * (1.0 / math.sqrt(2.0))))
    pdf = F.exp(-0.5 * x * x) * (1.0 / math.sqrt(2.0 * math.pi))
    return [g * (cdf + x * pdf)]


def _declare(name, ref, vjp, scalar, doc, sign=None):
    register(OpDef(name, Kind.ELEMENTWISE, _infer_float, ref, vjp, scalar, doc=doc, sign=sign))


_declare(
    "relu",
    lambda n, a, c: np.maximum(a[0], 0),
    lambda n, g, needs: [F.where(n.inputs[0] > 0, g, 0)],
    "max({0}, 0.0)",
    "max(x, 0)",
    sign="nonnegative",
)
_declare(
    "leaky_relu",
    lambda n, a, c: np.where(a[0] > 0, a[0], a[0] * n.attrs["alpha"]),
    lambda n, g, needs: [F.where(n.inputs[0] > 0, g, g * n.attrs["alpha"])],
    lambda attrs: f"({{0}} if {{0}} > 0 else {attrs['alpha']!r} * {{0}})",
    "x if x > 0 else alpha * x",
)
_declare(
    "sigmoid",
    lambda n, a, c: _stable_sigmoid(a[0]),
    lambda n, g, needs: [g * n * (1.0 - n)],
    "(1.0 / (1.0 + math.exp(-{0})))",  # exp overflow gives inf, so 1/inf = 0: no NaN
    "1 / (1 + exp(-x)), without overflow",
    sign="positive",
)
_declare(
    "tanh",
    lambda n, a, c: np.tanh(a[0]),
    lambda n, g, needs: [g * (1.0 - n * n)],
    "math.tanh({0})",
    "hyperbolic tangent",
)
_declare(
    "softplus",
    lambda n, a, c: np.logaddexp(0, a[0]).astype(a[0].dtype),
    lambda n, g, needs: [g * F.sigmoid(n.inputs[0])],
    "(max({0}, 0.0) + math.log1p(math.exp(-abs({0}))))",
    "log(1 + exp(x)), without overflow",
    sign="nonnegative",
)
_declare(
    "gelu",
    lambda n, a, c: _gelu(a[0]),
    _vjp_gelu,
    "(0.5 * {0} * (1.0 + math.erf({0} * 0.7071067811865476)))",
    "x * Phi(x) (exact, erf form)",
)


def _unary(op):
    def f(x):
        return apply(op, [x])

    f.__name__ = op
    return f


relu, sigmoid, tanh, softplus, gelu = (_unary(o) for o in ("relu", "sigmoid", "tanh", "softplus", "gelu"))


def leaky_relu(x, alpha: float = 0.01):
    if not isinstance(alpha, int | float) or not math.isfinite(alpha):
        error(AttributeValueError, "leaky_relu", f"alpha must be a finite number, got {alpha!r}")
    return apply("leaky_relu", [x], {"alpha": float(alpha)})


# -- softmax family: a reduction along one axis ---------------------------------------------
def _softmax_ref(n, a, c):
    x = a[0]
    ax = n.attrs["axis"]
    z = np.exp(x - np.max(x, axis=ax, keepdims=True, initial=-np.inf))  # initial: an empty axis is no error
    return z / np.sum(z, axis=ax, keepdims=True)


def _log_softmax_ref(n, a, c):
    x = a[0]
    ax = n.attrs["axis"]
    z = x - np.max(x, axis=ax, keepdims=True, initial=-np.inf)
    return z - np.log(np.sum(np.exp(z), axis=ax, keepdims=True))


def _vjp_softmax(n, g, needs):
    ax = n.attrs["axis"]
    return [n * (g - F.sum(g * n, ax, keepdims=True))]


def _vjp_log_softmax(n, g, needs):
    ax = n.attrs["axis"]
    return [g - F.exp(n) * F.sum(g, ax, keepdims=True)]


register(
    OpDef(
        "softmax",
        Kind.REDUCTION,
        _infer_float,
        _softmax_ref,
        _vjp_softmax,
        sign="positive",
        doc="exp(x - max) / sum(exp(x - max)) along axis",
    )
)
register(
    OpDef(
        "log_softmax",
        Kind.REDUCTION,
        _infer_float,
        _log_softmax_ref,
        _vjp_log_softmax,
        doc="x - logsumexp(x) along axis",
    )
)


def softmax(x, axis: int = -1):
    return apply("softmax", [x], {"axis": checked_axis("softmax", axis, x)})


def log_softmax(x, axis: int = -1):
    return apply("log_softmax", [x], {"axis": checked_axis("log_softmax", axis, x)})
