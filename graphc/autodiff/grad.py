"""Reverse-mode symbolic differentiation: builds backward nodes in the same graph.

Each backward node is tagged Phase.BACKWARD and carries the label of the forward value it
differentiates (`node.grad_of`), so drawings and the text form can tell forward from backward.
Because gradients are ordinary nodes, they can be differentiated again (Hessian-vector
products, grad of grad). A node with several outputs (graphc.ir.node.TupleNode) collects one
cotangent per output: its vjp rule receives a list with one cotangent (or None) per output.
"""

from graphc.errors import GradientError, where
from graphc.ir import dtypes
from graphc.ir.graph import backward_of
from graphc.ir.node import Node
from graphc.ops import api as F
from graphc.ops.control import bind_autodiff
from graphc.ops.registry import constant


def _differentiable(n: Node) -> bool:
    return any(dtypes.is_float(dt) for _, dt in n.types)


def grad(y: Node, wrt, cotangent: Node | None = None):
    """Gradient of scalar `y` with respect to a node or a list of nodes.

    Returns a node (or a list matching `wrt`). Integer and boolean values and
    non-differentiable ops stop the gradient; a `wrt` that `y` does not depend on gets zeros.
    `cotangent` seeds a non-scalar `y` (a vector-Jacobian product).
    """
    single = isinstance(wrt, Node)
    targets = [wrt] if single else list(wrt)
    if not isinstance(y, Node) or y.is_tuple:
        raise GradientError(f"grad: y must be a single-output graph node, got {type(y).__name__}")
    for t in targets:
        if not isinstance(t, Node):
            raise GradientError(f"grad: wrt must be graph nodes, got {type(t).__name__}")
        if t.is_tuple:
            raise GradientError(f"grad: {t.label} has several outputs; differentiate with respect to one (tuple_get)")
        if t.graph is not y.graph:
            raise GradientError(f"grad: {t.label} is not in y's graph {y.graph.name!r}")
        if not _differentiable(t):
            raise GradientError(
                f"grad: cannot differentiate with respect to {t.label} of dtype {t.dtype}" + where(t.location)
            )
    if not _differentiable(y):
        raise GradientError(f"grad: y ({y.label}: {y.type_str}) must be a float value" + where(y.location))
    if cotangent is None and y.shape != ():
        raise GradientError(
            f"grad: y must be a scalar, got {y.type_str}; reduce it (sum/mean) or pass a cotangent" + where(y.location)
        )
    if cotangent is not None and (cotangent.shape != y.shape or cotangent.dtype != y.dtype):
        raise GradientError(f"grad: cotangent {cotangent.type_str} does not match y {y.type_str}")

    with backward_of(y):
        seed = cotangent if cotangent is not None else constant(1.0, y.dtype, graph=y.graph)
    out = _backprop([y], [seed], targets)
    return out[0] if single else out


def vjp(ys, cotangents, wrt) -> list[Node]:
    """The gradients of sum_i <ys[i], cotangents[i]> with respect to each node of `wrt` (zeros
    for one no y depends on): the vector-Jacobian product of several outputs at once, as the
    scan's rule takes it of its body (graphc.ops.control)."""
    ys, cotangents, targets = list(ys), list(cotangents), list(wrt)
    if len(ys) != len(cotangents):
        raise GradientError(f"vjp: {len(ys)} outputs but {len(cotangents)} cotangents")
    named = [("output", y) for y in ys] + [("cotangent", c) for c in cotangents] + [("wrt", t) for t in targets]
    for what, n in named:
        if not isinstance(n, Node) or n.is_tuple:
            raise GradientError(f"vjp: each {what} must be a single-output graph node, got {n!r:.80}")
        if n.graph is not named[0][1].graph:
            raise GradientError(f"vjp: {what} {n.label} is not in the graph of {named[0][1].label}")
    for y, c in zip(ys, cotangents):
        if (c.shape, c.dtype) != (y.shape, y.dtype) or not _differentiable(y):
            raise GradientError(f"vjp: cotangent {c.type_str} does not fit float output {y.label}: {y.type_str}")
    return _backprop(ys, cotangents, targets)


def _backprop(ys: list[Node], seeds: list[Node], targets: list[Node]) -> list[Node]:
    """The gradients of sum_i <ys[i], seeds[i]> with respect to each target (all in one graph)."""
    anchor = ys[0] if ys else None
    order = ys[0].graph.live_nodes(ys) if ys else []
    reach = _reaching(order, targets)  # nodes through which some target influences y
    grads: dict[int, list[Node]] = {}
    for y, seed in zip(ys, seeds):
        grads.setdefault(y.id, []).append(seed)
    for y in ys:
        if len(grads[y.id]) > 1:
            grads[y.id] = [_sum(y, grads[y.id])]

    for node in reversed(order):
        if node.id not in grads or not node.inputs or node.id not in reach:
            continue
        g = _total(node, grads.pop(node.id))
        grads[node.id] = [g]
        opdef = node.opdef
        needs = [x.id in reach and _differentiable(x) for x in node.inputs]
        if not any(needs) or opdef.vjp is None or (node.is_tuple and all(c is None for c in g)):
            continue
        with backward_of(node):
            in_grads = opdef.vjp(node, list(g) if node.is_tuple else g, needs)
        for x, gx, need in zip(node.inputs, in_grads, needs):
            if need and gx is not None:
                grads.setdefault(x.id, []).append(_checked(node, x, gx))

    out = []
    for t in targets:
        parts = grads.get(t.id)
        if parts is None:
            with backward_of(anchor):
                out.append(F.zeros_like(t))
        else:
            out.append(_total(t, parts))
            grads[t.id] = [out[-1]]
    return out


def _checked(node: Node, x: Node, gx):
    """gx, the gradient node's rule gave for input x, checked against x's type and cast to its dtype
    (for an input with several outputs: a tuple with one gradient or None per output)."""
    if not x.is_tuple:
        gx = (gx,)
    elif not isinstance(gx, tuple | list) or len(gx) != len(x.types):
        raise GradientError(
            f"grad: the {node.op} rule must give {len(x.types)} gradients for {x.label}, got {gx!r:.80}"
        )
    out = []
    for part, (shape, dtype) in zip(gx, x.types):
        if part is not None and part.shape != shape:
            raise GradientError(
                f"grad: the {node.op} rule gave a gradient of shape {part.type_str} for input "
                f"{x.type_str if not x.is_tuple else x.label + ' ' + x.type_str}"
            )
        out.append(None if part is None else F.cast(part, dtype) if dtypes.is_float(dtype) else None)
    return tuple(out) if x.is_tuple else out[0]


def _total(node: Node, parts: list):
    """Sum the gradient contributions from each use of `node` (fan-out); for a node with several
    outputs, per output (None where an output got none)."""
    if node.is_tuple:
        return tuple(_sum(node, [p[i] for p in parts if p[i] is not None]) for i in range(len(node.types)))
    return _sum(node, parts)


def _sum(node: Node, parts: list[Node]) -> Node | None:
    if len(parts) <= 1:
        return parts[0] if parts else None
    with backward_of(node):
        total = parts[0]
        for p in parts[1:]:
            total = total + p
    return total


def _reaching(order: list[Node], targets: list[Node]) -> set[int]:
    """ids of nodes that depend on some target (including the targets)."""
    reach = {t.id for t in targets}
    for n in order:
        if n.id not in reach and any(x.id in reach for x in n.inputs):
            reach.add(n.id)
    return reach


def gradients(loss: Node, params=None) -> dict[str, Node]:
    """{param name: gradient node} for the graph's trainable parameters (or those given)."""
    graph = loss.graph
    nodes = list(graph.trainable().values()) if params is None else list(params)
    return dict(zip((p.name for p in nodes), grad(loss, nodes)))


bind_autodiff(vjp)  # the scan's rule differentiates its body with vjp
