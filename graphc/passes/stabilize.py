"""Numerical stabilization: rewrite forms that overflow or divide by an underflowed zero.

Forward rules (keyed by op, like the simplifier's table):
    log(softmax(x))        -> log_softmax(x)
    log(sigmoid(x))        -> -softplus(-x)
    log(1 + exp(x))        -> softplus(x)
    log(sum(exp(x), axes)) -> m + log(sum(exp(x - m), axes)),  m = max(x, axes)
    exp(x) / sum(exp(x), axis, keepdims) -> softmax(x, axis)
Backward rules, for the gradients autodiff already built from those forms:
    (a / s) * s            -> a               s = softmax, sigmoid or exp: positive in exact
                                              arithmetic, so the quotient only lost information
    s * (a / s - r)        -> a - s * r       the softmax rule's shape; gives softmax - onehot
                                              for a hand-written softmax cross-entropy
    (a / (1 + e)) * e      -> a * sigmoid(x)  e = exp(x): gradient of log(1 + exp(x))
    bcast(a / sum(e)) * e  -> bcast(a) * exp(x - logsumexp(x))   e = exp(x)
These turn inf/nan into the finite limits for large inputs and agree elsewhere up to rounding.
"""

from graphc.ir.graph import Graph
from graphc.passes.rewrite import Rewriter, rewrite, table_rule
from graphc.passes.simplify import is_const


def _one_plus(node):
    """If node is 1 + y or y + 1, y; else None."""
    if node.op != "add":
        return None
    a, b = node.inputs
    return b if is_const(a, 1) else a if is_const(b, 1) else None


def _lse_keepdims(rw: Rewriter, x, axes):
    """max(x) + log(sum(exp(x - max(x)))) over axes, keeping them (one per (x, axes), reused)."""
    key = ("logsumexp", x.id, axes)
    if key not in rw.memo:
        m = rw.emit("max", [x], {"axes": axes, "keepdims": True})
        s = rw.emit("sum", [rw.emit("exp", [rw.emit("sub", [x, m])])], {"axes": axes, "keepdims": True})
        rw.memo[key] = rw.emit("add", [m, rw.emit("log", [s])])
    return rw.memo[key]


# -- forward rules (on log and div) -----------------------------------------------------------------
def _log_softmax(rw, node, inputs):
    s = inputs[0]
    if s.op == "softmax":
        return rw.emit("log_softmax", [s.inputs[0]], {"axis": s.attrs["axis"]})
    return None


def _log_sigmoid(rw, node, inputs):
    s = inputs[0]
    if s.op == "sigmoid":
        return rw.emit("neg", [rw.emit("softplus", [rw.emit("neg", [s.inputs[0]])])])
    return None


def _log_one_plus_exp(rw, node, inputs):
    e = _one_plus(inputs[0])
    if e is not None and e.op == "exp" and e.shape == inputs[0].shape:
        return rw.emit("softplus", [e.inputs[0]])
    return None


def _log_sum_exp(rw, node, inputs):
    s = inputs[0]
    if s.op != "sum" or s.inputs[0].op != "exp" or not s.attrs["axes"]:
        return None
    x = s.inputs[0].inputs[0]
    lse = _lse_keepdims(rw, x, s.attrs["axes"])
    return lse if lse.shape == node.shape else rw.emit("reshape", [lse], {"shape": node.shape})


def _handwritten_softmax(rw, node, inputs):
    e, s = inputs
    if e.op != "exp" or s.op != "sum" or s.inputs[0] is not e or not s.attrs["keepdims"]:
        return None
    if len(s.attrs["axes"]) != 1:
        return None
    return rw.emit("softmax", [e.inputs[0]], {"axis": s.attrs["axes"][0]})


# -- backward rules (on mul) ----------------------------------------------------------------------------
def _cancel_quotient(rw, node, inputs):
    """(a / s) * s -> a for s positive in exact arithmetic."""
    for q, s in (inputs, inputs[::-1]):
        if q.op == "div" and q.inputs[1] is s and s.opdef.sign == "positive" and q.inputs[0].shape == node.shape:
            return q.inputs[0]
    return None


def _distribute_quotient(rw, node, inputs):
    """s * (a / s - r) -> a - s * r (the softmax gradient applied to the log's gradient)."""
    for s, d in (inputs, inputs[::-1]):
        if s.opdef.sign != "positive" or d.op != "sub":
            continue
        q, r = d.inputs
        if q.op == "div" and q.inputs[1] is s and q.inputs[0].shape == node.shape:
            return rw.emit("sub", [q.inputs[0], rw.emit("mul", [s, r])])
    return None


def _softplus_gradient(rw, node, inputs):
    """(a / (1 + exp(x))) * exp(x) -> a * sigmoid(x)."""
    for q, e in (inputs, inputs[::-1]):
        if e.op == "exp" and q.op == "div" and _one_plus(q.inputs[1]) is e:
            return rw.emit("mul", [q.inputs[0], rw.emit("sigmoid", [e.inputs[0]])])
    return None


def _lse_gradient(rw, node, inputs):
    """broadcast(a / sum(exp(x))) * exp(x) -> broadcast(a) * exp(x - logsumexp(x))."""
    for b, e in (inputs, inputs[::-1]):
        if e.op != "exp":
            continue
        wrappers, q = [], b
        while q.op in ("broadcast_to", "reshape"):  # how the sum's gradient reaches exp's shape
            wrappers.append(q)
            q = q.inputs[0]
        if q.op != "div" or q.inputs[1].op != "sum" or q.inputs[1].inputs[0] is not e:
            continue
        a, s = q.inputs[0], q.inputs[1]
        if a.shape != q.shape or not s.attrs["axes"]:
            continue
        for w in reversed(wrappers):
            a = rw.emit(w.op, [a], w.attrs)
        x = e.inputs[0]
        p = rw.emit("exp", [rw.emit("sub", [x, _lse_keepdims(rw, x, s.attrs["axes"])])])
        return rw.emit("mul", [a, p])
    return None


STABILIZE_RULES = {
    "log": [_log_softmax, _log_sigmoid, _log_one_plus_exp, _log_sum_exp],
    "div": [_handwritten_softmax],
    "mul": [_cancel_quotient, _distribute_quotient, _softplus_gradient, _lse_gradient],
}


def stabilize(graph: Graph) -> Graph:
    """Numerical stabilization by the STABILIZE_RULES table (log-softmax, softplus, log-sum-exp, ...)."""
    return rewrite(graph, table_rule(STABILIZE_RULES))
