"""Losses: mse, cross-entropy from logits (integer labels or probability targets), binary
cross-entropy (with logits, and from probabilities), entropy of a distribution.

Cross-entropy is one op per target kind, computed from the logits with log-sum-exp, so
large logits stay finite; its gradient is the softmax-minus-target rule rather than the chain
through log(softmax): for labels one op of its own (cross_entropy_labels_grad, one pass over
each row), for probabilities softmax and elementwise ops that fusion compiles together.
"""

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, IndexRangeError, ShapeError, where
from graphc.ir import dtypes, shapes
from graphc.ir.node import Node
from graphc.ops.registry import F, Kind, OpDef, apply, as_node, checked_axis, error, register

__all__ = ["mse", "cross_entropy", "binary_cross_entropy_with_logits", "binary_cross_entropy", "entropy"]

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(op, per, reduction):
    if reduction == "mean":
        return F.mean(per)
    if reduction == "sum":
        return F.sum(per)
    return per


def _check_reduction(op, reduction):
    if reduction not in _REDUCTIONS:
        error(AttributeValueError, op, f"reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def _float_pair(op, a, b, what):
    """(a, b) as float nodes of a's dtype, b broadcasting to a's shape; b may be a number,
    an array or an int/bool node."""
    if not isinstance(a, Node):
        error(DTypeError, op, f"the first argument must be a graph node, got {type(a).__name__}")
    if not dtypes.is_float(a.dtype):
        error(DTypeError, op, f"needs float predictions/logits, got {a.type_str}")
    b = as_node(b, like=a) if not isinstance(b, Node) else b
    _same_shape(op, a, b, what)
    return a, F.cast(b, a.dtype)


def _same_shape(op, a, b, what):
    try:
        ok = shapes.broadcast(a.shape, b.shape) == a.shape
    except ShapeError:
        ok = False
    if not ok:
        error(ShapeError, op, f"{what} {b.type_str} does not match {a.type_str}")


def _drop(shape, ax):
    return tuple(d for i, d in enumerate(shape) if i != ax)


def _expand(g, n):
    """The per-example gradient g with the class axis put back (size 1), to broadcast."""
    ax = n.attrs["axis"]
    return F.reshape(g, (*g.shape[:ax], 1, *g.shape[ax:]))


def _lse(x, ax):
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m + np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True))


# -- cross-entropy with integer labels ------------------------------------------------------
def _infer_ce_labels(inputs, attrs):
    logits, labels = inputs
    if not dtypes.is_float(logits.dtype):
        raise DTypeError(f"logits must be float, got {logits.dtype}")
    if not dtypes.is_int(labels.dtype):
        raise DTypeError(f"labels must be int32 or int64, got {labels.dtype}")
    ax = attrs["axis"]
    want = _drop(logits.shape, ax)
    if labels.shape != want:
        raise ShapeError(
            f"labels {shapes.fmt(labels.shape)} must have logits' shape without the class axis {ax}: {shapes.fmt(want)}"
        )
    return want, logits.dtype


def _check_labels(n, labels, depth):
    """Raise cross_entropy's error for the first label outside [0, depth)."""
    bad = (labels < 0) | (labels >= depth)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise IndexRangeError(
            f"cross_entropy: label {int(labels[pos])} at position {pos} is out of range [0, {depth}) "
            f"for {depth} classes" + where(n.location)
        )


def _ref_ce_labels(n, a, c):
    x, labels = a
    ax = n.attrs["axis"]
    _check_labels(n, labels, x.shape[ax])
    picked = np.take_along_axis(x, np.expand_dims(labels, ax).astype(np.intp), axis=ax)
    return np.squeeze(_lse(x, ax) - picked, axis=ax)


def _vjp_ce_labels(n, g, needs):
    logits, labels = n.inputs
    # (softmax(logits) - onehot(labels)) * g as one op: one pass over each row, where softmax,
    # one_hot and their difference would be three steps (the mlp's head: 69 us of them, 5 fused)
    return [apply("cross_entropy_labels_grad", [logits, labels, g], {"axis": n.attrs["axis"]}), None]


register(
    OpDef(
        "cross_entropy_labels",
        Kind.REDUCTION,
        _infer_ce_labels,
        _ref_ce_labels,
        _vjp_ce_labels,
        doc="logsumexp(x) - x[label] along axis, per example",
    )
)


# -- its gradient: (softmax(x) - onehot(label)) * g, per example's g --------------------------------
def _infer_ce_labels_grad(inputs, attrs):
    logits, labels, g = inputs
    want, dt = _infer_ce_labels([logits, labels], attrs)
    if g.dtype != dt:
        raise DTypeError(f"the per-example gradient must be {dt} as the logits are, got {g.dtype}")
    if g.shape != want:
        raise ShapeError(f"the per-example gradient {shapes.fmt(g.shape)} must have the labels' {shapes.fmt(want)}")
    return logits.shape, dt


def _ref_ce_labels_grad(n, a, c):
    x, labels, g = a
    ax = n.attrs["axis"]
    _check_labels(n, labels, x.shape[ax])
    z = np.exp(x - np.max(x, axis=ax, keepdims=True, initial=-np.inf))
    soft = z / np.sum(z, axis=ax, keepdims=True)
    classes = np.arange(x.shape[ax]).reshape((-1,) + (1,) * (x.ndim - 1 - ax))
    onehot = (np.expand_dims(labels, ax) == classes).astype(x.dtype)
    return ((soft - onehot) * np.expand_dims(g, ax)).astype(x.dtype)


def _vjp_ce_labels_grad(n, u, needs):
    logits, labels, g = n.inputs
    ax = n.attrs["axis"]
    soft = F.softmax(logits, ax)
    gx = gg = None
    if needs[0]:  # softmax's vjp of u * g
        gx = _expand(g, n) * soft * (u - F.sum(soft * u, ax, keepdims=True))
    if needs[2]:
        attrs = {"depth": logits.shape[ax], "dtype": logits.dtype, "axis": ax, "caller": "cross_entropy"}
        gg = F.sum((soft - apply("one_hot", [labels], attrs)) * u, ax)
    return [gx, None, gg]


register(
    OpDef(
        "cross_entropy_labels_grad",
        Kind.REDUCTION,
        _infer_ce_labels_grad,
        _ref_ce_labels_grad,
        _vjp_ce_labels_grad,
        doc="(softmax(x) - onehot(label)) * g along axis: cross_entropy_labels' gradient",
    )
)


# -- cross-entropy with probability targets -------------------------------------------------
def _infer_ce_probs(inputs, attrs):
    logits, targets = inputs
    if not dtypes.is_float(logits.dtype) or targets.dtype != logits.dtype:
        raise DTypeError(f"logits and targets must be floats of one dtype, got {logits.dtype} and {targets.dtype}")
    if targets.shape != logits.shape:
        raise ShapeError(f"targets {shapes.fmt(targets.shape)} must have the logits' shape {shapes.fmt(logits.shape)}")
    return _drop(logits.shape, attrs["axis"]), logits.dtype


def _ref_ce_probs(n, a, c):
    x, t = a
    ax = n.attrs["axis"]
    # sum(t * (lse - x)): where t == 0 the term is 0 even if x is -inf
    return np.sum(np.where(t == 0, 0, t * (_lse(x, ax) - x)), axis=ax)


def _vjp_ce_probs(n, g, needs):
    logits, targets = n.inputs
    ax = n.attrs["axis"]
    ge = _expand(g, n)
    gx = gt = None
    if needs[0]:
        gx = (F.softmax(logits, ax) * F.sum(targets, ax, keepdims=True) - targets) * ge
    if needs[1]:
        gt = -F.log_softmax(logits, ax) * ge
    return [gx, gt]


register(
    OpDef(
        "cross_entropy_probs",
        Kind.REDUCTION,
        _infer_ce_probs,
        _ref_ce_probs,
        _vjp_ce_probs,
        doc="sum(t * (logsumexp(x) - x)) along axis, per example",
    )
)


def cross_entropy(logits, target, axis: int = -1, reduction: str = "mean"):
    """Softmax cross-entropy from logits, stable for large logits.

    An integer `target` holds class labels (logits' shape without `axis`); a float `target`
    holds probabilities (logits' shape). reduction: "mean" over examples, "sum" or "none".
    Labels outside [0, classes) raise an error when run.
    """
    op = "cross_entropy"
    _check_reduction(op, reduction)
    if not isinstance(logits, Node) or not dtypes.is_float(logits.dtype):
        error(DTypeError, op, f"logits must be a float node, got {getattr(logits, 'type_str', logits)!r}")
    ax = checked_axis(op, axis, logits, what="logits")
    if not isinstance(logits.shape[ax], int) or logits.shape[ax] == 0:
        error(ShapeError, op, f"the class axis {ax} of logits {logits.type_str} must have a known, non-zero size")
    if not isinstance(target, Node):
        arr = np.asarray(target)
        target = as_node(target, dtype="int64" if arr.dtype.kind in "iu" else logits.dtype, like=logits)
    if target.dtype == "bool":
        error(DTypeError, op, f"target must be int labels or float probabilities, got {target.type_str}")
    if dtypes.is_int(target.dtype):
        want = _drop(logits.shape, ax)
        if target.shape != want:
            error(
                ShapeError,
                op,
                f"labels {target.type_str} do not match logits {logits.type_str}: "
                f"labels need shape {shapes.fmt(want)} (logits without class axis {ax})",
            )
        per = apply("cross_entropy_labels", [logits, target], {"axis": ax})
    else:
        if target.shape != logits.shape:
            error(
                ShapeError, op, f"probability targets {target.type_str} must have the shape of logits {logits.type_str}"
            )
        per = apply("cross_entropy_probs", [logits, F.cast(target, logits.dtype)], {"axis": ax})
    return _reduce(op, per, reduction)


# -- binary cross-entropy -------------------------------------------------------------------
def _infer_bce(inputs, attrs):
    x, t = inputs
    if not dtypes.is_float(x.dtype) or t.dtype != x.dtype:
        raise DTypeError(f"logits and targets must be floats of one dtype, got {x.dtype} and {t.dtype}")
    return shapes.broadcast(x.shape, t.shape), x.dtype


def _ref_bce(n, a, c):
    x, t = a
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _vjp_bce(n, g, needs):
    x, t = n.inputs
    return [
        F.sum_to((F.sigmoid(x) - t) * g, x.shape) if needs[0] else None,
        F.sum_to(-x * g, t.shape) if needs[1] else None,
    ]


register(
    OpDef(
        "bce_with_logits",
        Kind.BROADCAST,
        _infer_bce,
        _ref_bce,
        _vjp_bce,
        scalar="(max({0}, 0.0) - {0} * {1} + math.log1p(math.exp(-abs({0}))))",
        doc="-(t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))), without overflow",
    )
)


def binary_cross_entropy_with_logits(logits, targets, reduction: str = "mean"):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], computed stably."""
    op = "binary_cross_entropy_with_logits"
    _check_reduction(op, reduction)
    x, t = _float_pair(op, logits, targets, "targets")
    return _reduce(op, apply("bce_with_logits", [x, t]), reduction)


def binary_cross_entropy(probs, targets, reduction: str = "mean", eps: float = 1e-7):
    """Binary cross-entropy of probabilities, clipped to [eps, 1 - eps] so log stays finite.

    Prefer binary_cross_entropy_with_logits: it is exact where this clips.
    """
    op = "binary_cross_entropy"
    _check_reduction(op, reduction)
    if not isinstance(eps, float) or not 0.0 < eps < 0.5:
        error(AttributeValueError, op, f"eps must be a float in (0, 0.5), got {eps!r}")
    p, t = _float_pair(op, probs, targets, "targets")
    p = F.minimum(F.maximum(p, eps), 1.0 - eps)
    return _reduce(op, -(t * F.log(p) + (1.0 - t) * F.log(1.0 - p)), reduction)


# -- mse and entropy (compositions: their gradients come from the ops they are made of) -----
def mse(pred, target, reduction: str = "mean"):
    """Squared error (pred - target)**2; target must match pred's shape (or broadcast to it)."""
    op = "mse"
    _check_reduction(op, reduction)
    p, t = _float_pair(op, pred, target, "target")
    d = p - t
    return _reduce(op, d * d, reduction)


def entropy(p, axis: int = -1):
    """-sum(p log p) along axis, with 0 log 0 = 0: finite value and gradient where p = 0."""
    op = "entropy"
    if not isinstance(p, Node) or not dtypes.is_float(p.dtype):
        error(DTypeError, op, f"needs a float node of probabilities, got {getattr(p, 'type_str', p)!r}")
    ax = checked_axis(op, axis, p)
    safe = F.where(p > 0, p, 1.0)  # log(1) = 0, and where() routes no gradient to the p = 0 branch
    return -F.sum(p * F.log(safe), ax)
