"""Import rules: ONNX's reductions (ReduceSum ... ReduceLogSumExp) and ArgMax/ArgMin.

Opsets before 13 (ReduceSum) and 18 (the others) give the axes as an attribute, later ones as
an optional input, with noop_with_empty_axes saying what no axes means.
"""

import numpy as np

from graphc.ir import dtypes
from graphc.onnx.importer_registry import onnx_op
from graphc.ops import api as F


def _l2(x, axes, keepdims):
    return F.sqrt(F.sum(x * x, axes, keepdims))


def _log_sum_exp(x, axes, keepdims):
    top = F.max(x, axes, keepdims=True)
    safe = F.where(F.equal(F.abs(top), float("inf")), F.zeros_like(top), top)  # all -inf (or an inf): no shift
    out = F.log(F.sum(F.exp(x - safe), axes, keepdims=True)) + safe
    return out if keepdims else F.squeeze(out, axes)


_REDUCTIONS = {
    "ReduceSum": (F.sum, False, 13),
    "ReduceMean": (F.mean, True, 18),
    "ReduceMax": (F.max, False, 18),
    "ReduceMin": (F.min, False, 18),
    "ReduceL1": (lambda x, axes, keepdims: F.sum(F.abs(x), axes, keepdims), False, 18),
    "ReduceL2": (_l2, True, 18),
    "ReduceSumSquare": (lambda x, axes, keepdims: F.sum(x * x, axes, keepdims), False, 18),
    "ReduceLogSum": (lambda x, axes, keepdims: F.log(F.sum(x, axes, keepdims)), True, 18),
    "ReduceLogSumExp": (_log_sum_exp, True, 18),
}


_INF = float("inf")
_EMPTY = {
    "ReduceSum": 0,
    "ReduceMean": float("nan"),
    "ReduceMax": -_INF,
    "ReduceMin": _INF,
    "ReduceL1": 0,
    "ReduceL2": 0,
    "ReduceSumSquare": 0,
    "ReduceLogSum": -_INF,
    "ReduceLogSumExp": -_INF,
}


def _empty_value(op_type: str, dtype: str):
    value = _EMPTY[op_type]
    if dtype == "bool":
        return value > 0 if value else False
    if dtypes.is_int(dtype) and value in (-_INF, _INF):
        info = np.iinfo(dtype)
        return int(info.min if value < 0 else info.max)
    return value


def _reduce(fn, float_only, from_input):
    def rule(n):
        x = n.input(0)
        if float_only and not dtypes.is_float(x.dtype):
            n.unsupported(f"input has dtype {x.dtype}; graphc computes {n.op_type} in float32 or float64")
        if from_input:
            axes = n.ints(1, "axes") if n.has(1) else ()
        else:
            axes = tuple(n.attr("axes", ()))
        if not axes:
            if n.attr("noop_with_empty_axes", 0):
                return x
            axes = tuple(range(x.ndim))
        for a in axes:
            if not -x.ndim <= a < max(x.ndim, 1):
                n.unsupported(f"axis {a} is out of range for {x.type_str}")
        axes = tuple(sorted({a % x.ndim for a in axes})) if x.ndim else ()
        keepdims = bool(n.attr("keepdims", 1))
        if any(x.shape[a] == 0 for a in axes):  # an empty reduction gives the reduction's identity
            out = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keepdims or i not in axes)
            return F.broadcast_to(F.constant(_empty_value(n.op_type, x.dtype), x.dtype), out)
        if x.dtype == "bool":  # max/min of bools: any/all, through integers
            return F.cast(fn(F.cast(x, "int32"), axes, keepdims=keepdims), "bool")
        return fn(x, axes, keepdims=keepdims)

    return rule


for _op, (_fn, _float_only, _moved) in _REDUCTIONS.items():
    onnx_op(_op, since=1, attrs={"axes", "keepdims"})(_reduce(_fn, _float_only, False))
    onnx_op(_op, since=_moved, attrs={"keepdims", "noop_with_empty_axes"})(_reduce(_fn, _float_only, True))


def _arg(sign):
    def rule(n):
        x = n.input(0)
        axis = n.attr("axis", 0) % max(x.ndim, 1)
        keepdims = bool(n.attr("keepdims", 1))
        if sign < 0:
            x = -x if x.dtype != "bool" else F.logical_not(x)
        if not n.attr("select_last_index", 0):
            return F.argmax(x, axis, keepdims)
        dim = x.shape[axis]
        if not isinstance(dim, int):
            n.unsupported(f"select_last_index=1 over the symbolic axis {axis} of {x.type_str}")
        flipped = F.slice(x, [dim - 1], [-dim - 1], [-1], axes=[axis])
        return (dim - 1) - F.argmax(flipped, axis, keepdims)

    return rule


onnx_op("ArgMax", since=1, attrs={"axis", "keepdims", "select_last_index"})(_arg(1))
onnx_op("ArgMin", since=1, attrs={"axis", "keepdims", "select_last_index"})(_arg(-1))
