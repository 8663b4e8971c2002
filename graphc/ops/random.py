"""Random ops: the dropout mask, and dropout built on it.

A random op's value is a pure function of its attributes and the run counter (ctx.step):
the mask is drawn from np.random.default_rng([*seed, step]), so a compiled step function
gives a new mask on every call, the same sequence in every process, and two masks with
equal attributes are equal (common-subexpression elimination may merge them). In a scan
body the time index of each enclosing scan follows (ctx.loop): default_rng([*seed, step, t]),
so each step of a loop draws a different mask, the same on every backend.
"""

import math
import numbers

import numpy as np

from graphc.errors import AttributeValueError, DTypeError
from graphc.ir import dtypes
from graphc.ir.node import Node
from graphc.ops.registry import Kind, OpDef, apply, error, register

__all__ = ["dropout", "dropout_mask"]


def _infer_mask(inputs, attrs):
    p = attrs["p"]
    if not 0.0 <= p < 1.0:
        raise AttributeValueError(f"p must be in [0, 1), got {p}")
    if not dtypes.is_float(attrs["dtype"]):
        raise DTypeError(f"the mask must be float, got {attrs['dtype']}")
    return attrs["shape"], attrs["dtype"]


def _ref_mask(n, a, c):
    p = n.attrs["p"]
    rng = np.random.default_rng([*n.attrs["seed"], c.step, *c.loop])
    keep = rng.random(c.concrete(n.shape)) >= p
    return keep.astype(n.dtype) * np.asarray(1.0 / (1.0 - p), n.dtype)


register(
    OpDef(
        "dropout_mask",
        Kind.OPAQUE,
        _infer_mask,
        _ref_mask,
        None,
        random=True,
        doc="0 with probability p, else 1/(1-p); drawn from default_rng([*seed, step, *loop indices])",
    )
)


def _check_p(op, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not math.isfinite(p) or not 0.0 <= p < 1.0:
        error(AttributeValueError, op, f"p must be a number in [0, 1), got {p!r}")
    return float(p)


def _check_seed(op, seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        error(AttributeValueError, op, f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def dropout_mask(like: Node, p: float, seed: int = 0):
    """A random mask of like's shape and dtype: 0 with probability p, else 1/(1-p).

    Not differentiable; it differs from run to run (step) and is fixed by (seed, step).
    """
    p, seed = _check_p("dropout", p), _check_seed("dropout", seed)
    if not dtypes.is_float(like.dtype):
        error(DTypeError, "dropout", f"needs a float input, got {like.type_str}")
    attrs = {"shape": like.shape, "dtype": like.dtype, "p": p, "seed": (seed,)}
    with like.graph:  # a source op: it has no inputs to take the graph from
        return apply("dropout_mask", [], attrs)


def dropout(x: Node, p: float, seed: int = 0, training: bool = True):
    """Zero each element of x with probability p and scale the rest by 1/(1-p).

    With training=False (or p=0) it is the identity. Layers that use dropout more than once
    should give each a different seed, or their masks will coincide.
    """
    p = _check_p("dropout", p)
    _check_seed("dropout", seed)
    if not isinstance(x, Node):
        error(DTypeError, "dropout", f"x must be a graph node, got {type(x).__name__}")
    if not training or p == 0.0:
        return x
    return x * dropout_mask(x, p, seed)
