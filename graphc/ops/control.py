"""Loops: the scan op (the contract of jax.lax.scan), declared once: shape rule, reference, gradient.

`scan(f, init, xs)` traces `f(carry, x_t) -> (new_carry, y_t)` once into a body (a SubGraph) and
makes one `scan` node with several outputs:

    inputs   (*init_leaves, *xs_leaves, *captured)     captured: enclosing values the body reads
    attrs    body       the SubGraph: inputs = carry leaves, then x-slice leaves; captured after
                        them; outputs = new carry leaves, then per-step y leaves
             num_carry, num_xs, reverse (bool), length (the trip count T: an int or a dimension name),
             saved (bool, True unless given: whether the carry entering each step is stacked)
    outputs  (*final_carry_leaves, *stacked_ys [T, ...], *stacked_carry_ins [T, ...] if saved)

The last group, the carry entering each step, are the residuals the gradient reads; nothing
else reads them, and passes/loops.py's loop_prune clears `saved` where no one does (a scan
asked for no gradient then stacks no carries). Stacked values are time-major: index t holds
step t's value, in a reverse scan too (which runs t = T-1 down to 0).

The gradient is a reverse scan (a second `scan` node, `reverse` flipped). Its body recomputes
the forward body from (carry_in_t, x_t, captured) and takes its vector-Jacobian product with
the cotangents of the new carry and of y_t; it carries only the carry cotangents and the summed
gradients of the captured (loop-invariant) inputs, reads the stacked residuals, xs and y
cotangents as its xs, and stacks the x-slice gradients. Being a scan, it differentiates again.

A random op in a body draws different numbers at each step: the body's RunContext.loop holds
the time index of every enclosing scan, which random ops fold into their seed.
"""

import numbers

import numpy as np

from graphc.errors import AttributeValueError, DTypeError, GraphcError, GraphStructureError, ShapeError, where
from graphc.ir import dtypes
from graphc.ir.graph import current_graph
from graphc.ir.location import user_location
from graphc.ir.node import Node, TupleType
from graphc.ir.subgraph import SubGraph, trace
from graphc.ops.bodies import inline
from graphc.ops.context import RunContext
from graphc.ops.registry import F, Kind, OpDef, apply, error, register
from graphc.ops.tuple_ops import tuple_get

__all__ = ["scan"]


# -- the op ---------------------------------------------------------------------------------------
def _parts(attrs):
    body = attrs["body"]
    nc, nx = attrs["num_carry"], attrs["num_xs"]
    return body, nc, nx, len(body.outputs) - nc


def saves_residuals(attrs) -> bool:
    """Whether a scan with attributes `attrs` stacks its carry-ins as residual outputs (graph files
    written before the attribute existed hold scans that do)."""
    return attrs.get("saved", True)


def _infer_scan(inputs, attrs):
    body, nc, nx, ny = _parts(attrs)
    length, reverse = attrs["length"], attrs["reverse"]
    if not isinstance(body, SubGraph):
        raise AttributeValueError(f"body must be a sub-graph, got {type(body).__name__}")
    if not isinstance(reverse, bool):
        raise AttributeValueError(f"reverse must be True or False, got {reverse!r}")
    if not isinstance(saves_residuals(attrs), bool):
        raise AttributeValueError(f"saved must be True or False, got {saves_residuals(attrs)!r}")
    if not (isinstance(length, str) or (isinstance(length, int) and not isinstance(length, bool) and length >= 0)):
        raise AttributeValueError(f"length must be a non-negative int or a dimension name, got {length!r}")
    nk = len(body.captured)
    if len(body.inputs) != nc + nx or ny < 0 or len(inputs) != nc + nx + nk:
        raise AttributeValueError(
            f"the body takes {len(body.inputs)} inputs and {nk} captured values and gives {len(body.outputs)} "
            f"outputs, which does not fit {nc} carries, {nx} xs and {len(inputs)} inputs"
        )
    ins = body.all_inputs
    for i in range(nc):
        _same(f"carry {i}", inputs[i], ins[i], "the body's input")
        _same(f"carry {i}", inputs[i], body.outputs[i], "the body's new carry")
    for j in range(nx):
        x = inputs[nc + j]
        if x.ndim == 0 or x.shape[0] != length:
            raise ShapeError(f"xs {j} is {x.type_str}, not scanned over a leading axis of length {length}")
        if (x.shape[1:], x.dtype) != (ins[nc + j].shape, ins[nc + j].dtype):
            raise ShapeError(f"xs {j} is {x.type_str} but the body's x input is {ins[nc + j].type_str}")
    for j in range(nk):
        _same(f"captured value {j}", inputs[nc + nx + j], ins[nc + nx + j], "the body's input")
    carries = [(n.shape, n.dtype) for n in inputs[:nc]]
    stacked = [((length, *n.shape), n.dtype) for n in body.outputs[nc:]]
    residuals = [((length, *s), d) for s, d in carries] if saves_residuals(attrs) else []
    return TupleType([*carries, *stacked, *residuals])


def _same(what, x, y, other):
    if (x.shape, x.dtype) != (y.shape, y.dtype):
        raise ShapeError(f"{what} is {x.type_str} but {other} is {y.type_str}")


def _ref_scan(n, args, ctx):
    body, nc, nx, ny = _parts(n.attrs)
    carry, xs, caps = list(args[:nc]), args[nc : nc + nx], args[nc + nx :]
    (length,) = ctx.concrete((n.attrs["length"],))
    ys = [np.empty(ctx.concrete(s), d) for s, d in n.types[nc : nc + ny]]
    residuals = [np.empty(ctx.concrete(s), d) for s, d in n.types[nc + ny :]]  # none unless saved
    nodes = body.nodes  # once, not at every step
    for t in range(length - 1, -1, -1) if n.attrs["reverse"] else range(length):
        for r, c in zip(residuals, carry):
            r[t] = c
        outs = run_body_step(body, [*carry, *(x[t] for x in xs), *caps], ctx, t, nodes)
        carry = outs[:nc]
        for y, o in zip(ys, outs[nc:]):
            y[t] = o
    # Fresh arrays: a carry passed through (or a length-0 scan) would otherwise alias an input.
    return (*(np.array(c) for c in carry), *ys, *residuals)


def run_body_step(body: SubGraph, args, ctx: RunContext, index: int, nodes=None) -> list:
    """Run `body` once with the NumPy references, at time index `index` of its scan: `args` are
    its inputs then its captured values; random ops see `index` after the enclosing loops' in
    ctx.loop; `nodes` is body.nodes, if the caller has it. (The ops may not import the
    backends, whose run_body runs a body for users.)"""
    feeds = {node.name: a for node, a in zip(body.all_inputs, args)}
    sub = RunContext(feeds, {}, ctx.env, ctx.step, (*ctx.loop, index))
    vals = {}
    for node in body.nodes if nodes is None else nodes:
        vals[node.id] = _reference(node, [vals[x.id] for x in node.inputs], sub)
    return [vals[o.id] for o in body.outputs]


def _reference(node, args, ctx):
    try:
        out = node.opdef.ref(node, args, ctx)
    except GraphcError:
        raise
    except Exception as exc:
        got = ", ".join(str(np.shape(a)) for a in args)
        message = f"{node.op} in a scan body failed at run time on {got}: {exc}"
        raise GraphcError(message + where(node.location)) from exc
    if node.is_tuple:
        return tuple(np.asarray(o, dtype=d) for o, (_, d) in zip(out, node.types))
    out = np.asarray(out)
    return out if out.dtype == node.dtype else out.astype(node.dtype)


# -- the gradient: a reverse scan -------------------------------------------------------------------
class _Autodiff:
    """graphc.autodiff's vjp(ys, cotangents, wrt), bound by graphc.autodiff when it is imported (the
    ops never import it, which builds on them); only autodiff calls the rule that needs it."""

    vjp = None


_AUTODIFF = _Autodiff()


def bind_autodiff(vjp) -> None:
    """Called by graphc.autodiff on import: the scan's rule differentiates its body with `vjp`."""
    _AUTODIFF.vjp = vjp


def _vjp_scan(n, g, needs):
    body, nc, nx, ny = _parts(n.attrs)
    init, xs, caps = n.inputs[:nc], n.inputs[nc : nc + nx], n.inputs[nc + nx :]
    g_final, g_ys = g[:nc], g[nc : nc + ny]
    g_res = g[nc + ny :] if saves_residuals(n.attrs) else [None] * nc
    fc = [i for i in range(nc) if dtypes.is_float(init[i].dtype)]  # carries with cotangents
    kc = [j for j in range(len(caps)) if needs[nc + nx + j]]  # captured values whose gradient is summed
    xc = [j for j in range(nx) if needs[nc + j]]  # xs whose slices' gradients are stacked
    gy = [j for j in range(ny) if g_ys[j] is not None and dtypes.is_float(body.outputs[nc + j].dtype)]
    gr = [i for i in fc if g_res[i] is not None]
    # the carry-ins the reverse scan reads: this scan's, or those of a copy that saves them
    stacking = n if saves_residuals(n.attrs) else apply("scan", n.inputs, {**n.attrs, "saved": True})
    residuals = [tuple_get(stacking, nc + ny + i) for i in range(nc)]
    carry0 = [g_final[i] if g_final[i] is not None else F.zeros_like(init[i]) for i in fc]
    carry0 += [F.zeros_like(caps[j]) for j in kc]
    bxs = [*residuals, *xs, *(g_ys[j] for j in gy), *(g_res[i] for i in gr)]
    nf, nkc = len(fc), len(kc)

    def backward_step(*args):
        dc, dk = args[:nf], args[nf : nf + nkc]
        c_t, x_t = args[nf + nkc : nf + nkc + nc], args[nf + nkc + nc : nf + nkc + nc + nx]
        gy_t, gr_t = args[nf + nkc + nc + nx : len(args) - len(gr)], args[len(args) - len(gr) :]
        here = current_graph()  # the backward body being traced
        k = [here.own(c, "scan") for c in caps]
        outs = inline(body, [*c_t, *x_t, *k])
        ys = [outs[i] for i in fc] + [outs[nc + j] for j in gy]
        wrt = [c_t[i] for i in fc] + [x_t[j] for j in xc] + [k[j] for j in kc]
        grads = _AUTODIFF.vjp(ys, [*dc, *gy_t], wrt)
        dc_new = list(grads[:nf])
        for i, r in zip(gr, gr_t):  # a residual read elsewhere: its cotangent joins carry i's
            dc_new[fc.index(i)] = dc_new[fc.index(i)] + r
        dk_new = [a + b for a, b in zip(dk, grads[nf + len(xc) :])]
        return [*dc_new, *dk_new, *grads[nf : nf + len(xc)]]

    types = [*carry0, *((x.shape[1:], x.dtype) for x in bxs)]
    names = [f"d{i}" for i in range(nf + nkc)] + [f"x{i}" for i in range(len(bxs))]
    bbody, captures = trace(backward_step, types, names, op="scan", name=f"{n.graph.name}/scan_grad", enclosing=n.graph)
    attrs = {
        "body": bbody,
        "num_carry": nf + nkc,
        "num_xs": len(bxs),
        "length": n.attrs["length"],
        "reverse": not n.attrs["reverse"],
        "saved": True,
    }
    back = apply("scan", [*carry0, *bxs, *captures], attrs)
    out = [None] * len(n.inputs)
    for pos, i in enumerate(fc):
        out[i] = tuple_get(back, pos) if needs[i] else None
    for pos, j in enumerate(kc):
        out[nc + nx + j] = tuple_get(back, nf + pos)
    for pos, j in enumerate(xc):
        out[nc + j] = tuple_get(back, nf + nkc + pos)
    return out


register(
    OpDef(
        "scan",
        Kind.OPAQUE,
        _infer_scan,
        _ref_scan,
        _vjp_scan,
        doc="a loop over a body sub-graph: carries, per-step outputs stacked along a leading time axis",
    )
)


# -- the user's function ----------------------------------------------------------------------------
def _leaves(what: str, value, allow_none: bool = False):
    """(leaves, structure) of a node or a tuple/list of nodes; structure rebuilds the same kind."""
    if value is None and allow_none:
        return [], None
    if isinstance(value, Node):
        return [value], Node
    if isinstance(value, tuple | list):
        for i, v in enumerate(value):
            if not isinstance(v, Node):
                error(GraphStructureError, "scan", f"{what} {i} must be a graph node, got {_value_text(v)}")
        return list(value), type(value)
    kinds = "a node, a tuple/list of nodes or None" if allow_none else "a node or a tuple/list of nodes"
    error(GraphStructureError, "scan", f"{what} must be {kinds}, got {_value_text(value)}")


def _value_text(v) -> str:
    """What a user passed where nodes belong, in a few words (arrays by shape: make them gc.constant)."""
    if isinstance(v, Node):
        return f"node {v.label}: {v.type_str}"
    if isinstance(v, np.ndarray):
        return f"an array of shape {v.shape} (make it a node with gc.constant)"
    return f"{type(v).__name__} {v!r:.60}"


def _rebuild(structure, leaves):
    if structure is None:
        return None
    if structure is Node:
        return leaves[0]
    return structure(leaves)


def _struct_text(structure, leaves) -> str:
    types = ", ".join(x.type_str for x in leaves)
    if structure is Node:
        return f"a node ({types})"
    return f"a {structure.__name__} of {len(leaves)} node{'s' if len(leaves) != 1 else ''} ({types})"


def scan(f, init, xs=None, length=None, reverse=False):
    """Loop `f(carry, x_t) -> (new_carry, y_t)` over the leading (time) axis of `xs`.

    Returns `(final_carry, ys)`: ys stacks each step's y_t along a new leading axis of length T.
    `init` (the first carry) and y_t may be nodes or tuples/lists of nodes (returned in the same
    structure); a carry keeps its shape and dtype. `xs` is a node, a tuple/list of nodes of one
    length T along axis 0, or None with `length=T` (then f gets x_t = None). `reverse=True` runs
    from t = T-1 down to 0 (ys still indexed by t). `f` is traced once; the enclosing graph's
    values it reads (weights) become loop-invariant inputs. Differentiable: the gradient is a
    reverse scan.
    """
    loc = user_location()
    if not isinstance(reverse, bool):
        error(AttributeValueError, "scan", f"reverse must be True or False, got {type(reverse).__name__} {reverse!r}")
    if length is not None and (isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0):
        error(AttributeValueError, "scan", f"length must be a non-negative int, got {type(length).__name__} {length!r}")
    if not callable(f):
        error(GraphStructureError, "scan", f"f must be a function of (carry, x), got {type(f).__name__}")
    carry_leaves, carry_kind = _leaves("init", init)
    x_leaves, x_kind = _leaves("xs", xs, allow_none=True)
    for j, x in enumerate(x_leaves):
        if x.is_tuple:
            error(GraphStructureError, "scan", f"xs {j} ({x.label}) has several outputs; read one with tuple_get")
        if x.ndim == 0:
            error(ShapeError, "scan", f"xs {j} ({x.label}: {x.type_str}) has no leading axis to scan over")
    for j, x in enumerate(x_leaves[1:], 1):
        if x.shape[0] != x_leaves[0].shape[0]:
            first = x_leaves[0]
            error(ShapeError, "scan", f"xs have different lengths: xs 0 is {first.type_str}, xs {j} is {x.type_str}")
    if x_leaves:
        steps = x_leaves[0].shape[0]
        if length is not None and steps != length:
            error(ShapeError, "scan", f"length={length} but xs 0 is {x_leaves[0].type_str}")
    elif length is None:
        error(AttributeValueError, "scan", "give xs or length= (the number of steps)")
    else:
        steps = int(length)
    for i, c in enumerate(carry_leaves):
        if c.is_tuple:
            error(GraphStructureError, "scan", f"init {i} ({c.label}) has several outputs; read one with tuple_get")
    nc = len(carry_leaves)
    y_kind = []  # the structure of y, known once f has run

    def signature(args):
        return ", ".join(f"{a.name}: {a.type_str}" for a in args)

    def step(*args):
        carry, x = _rebuild(carry_kind, list(args[:nc])), _rebuild(x_kind, list(args[nc:]))
        try:
            result = f(carry, x)
        except (GraphStructureError, ShapeError, DTypeError, AttributeValueError) as exc:
            raise type(exc)(f"scan: in the body ({signature(args)}): {exc}") from None
        if not (isinstance(result, tuple | list) and len(result) == 2):
            error(GraphStructureError, "scan", f"the body must return a pair (new carry, y), got {_value_text(result)}")
        new_carry, y = result
        new_leaves, new_kind = _leaves("the body's new carry", new_carry)
        if new_kind is not carry_kind or len(new_leaves) != nc:
            error(
                GraphStructureError,
                "scan",
                f"the body returned as new carry {_struct_text(new_kind, new_leaves)}, but init is "
                f"{_struct_text(carry_kind, carry_leaves)}",
            )
        y_leaves, _ = _leaves("the body's y", y, allow_none=True)
        y_kind.append(None if y is None else Node if isinstance(y, Node) else type(y))
        return [*new_leaves, *y_leaves]

    types = [*carry_leaves, *((x.shape[1:], x.dtype) for x in x_leaves)]
    names = [f"c{i}" for i in range(nc)] + [f"x{j}" for j in range(len(x_leaves))]
    current = current_graph(required=False)
    enclosing = current if current is not None and current.tracing else None
    if enclosing is None:
        enclosing = (carry_leaves or x_leaves)[0].graph if carry_leaves or x_leaves else current
    body, captures = trace(step, types, names, op="scan", enclosing=enclosing)
    for i, (c, out) in enumerate(zip(carry_leaves, body.outputs)):
        if (c.shape, c.dtype) != (out.shape, out.dtype):
            kind = ShapeError if c.shape != out.shape else DTypeError
            raise kind(
                f"scan: carry {i} ({c.label}) is {c.type_str} in init but the body returns {out.type_str} for it; "
                f"a carry keeps its shape and dtype" + where(loc)
            )
    attrs = {"body": body, "num_carry": nc, "num_xs": len(x_leaves), "length": steps, "reverse": reverse, "saved": True}
    node = apply("scan", [*carry_leaves, *x_leaves, *captures], attrs)
    final = [tuple_get(node, i) for i in range(nc)]
    ys = [tuple_get(node, nc + j) for j in range(len(body.outputs) - nc)]
    return _rebuild(carry_kind, final), _rebuild(y_kind[0], ys)
