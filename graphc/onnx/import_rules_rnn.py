"""Import rules: ONNX's recurrent ops (RNN, GRU, LSTM), each a graphc scan over the time axis.

Every step's input projection is one product before the loop (X W^T + Wb for all t); the scan
body adds the recurrent product and applies the gates. A reverse direction is a reverse scan, a
bidirectional node two scans. sequence_lens masks the steps past each sequence's end: the state
stays and the output is zero there, as ONNX defines.
"""

import numpy as np

from graphc.ir import dtypes
from graphc.onnx.importer_registry import onnx_op
from graphc.ops import api as F

_ATTRS = {
    "activation_alpha",
    "activation_beta",
    "activations",
    "clip",
    "direction",
    "hidden_size",
    "layout",
}


def _activation(n, name, alpha, beta):
    acts = {
        "Sigmoid": F.sigmoid,
        "Tanh": F.tanh,
        "Relu": F.relu,
        "LeakyRelu": lambda x: F.leaky_relu(x, 0.01 if alpha is None else alpha),
        "HardSigmoid": lambda x: F.maximum(
            F.minimum(x * (0.2 if alpha is None else alpha) + (0.5 if beta is None else beta), 1.0), 0.0
        ),
        "Softsign": lambda x: x / (F.abs(x) + 1.0),
        "Softplus": F.softplus,
        "Affine": lambda x: x * (1.0 if alpha is None else alpha) + (0.0 if beta is None else beta),
        "ScaledTanh": lambda x: F.tanh(x * (1.0 if beta is None else beta)) * (1.0 if alpha is None else alpha),
    }
    if name not in acts:
        n.unsupported(f"activation {name!r} (graphc has {', '.join(acts)})")
    return acts[name]


def _activations(n, defaults, directions):
    names = n.attr("activations") or defaults * directions
    alphas, betas = list(n.attr("activation_alpha") or ()), list(n.attr("activation_beta") or ())
    if len(names) != len(defaults) * directions:
        n.unsupported(f"activations {names} (expected {len(defaults)} per direction)")
    out = []
    for i, name in enumerate(names):
        alpha = alphas[i] if i < len(alphas) else None
        beta = betas[i] if i < len(betas) else None
        out.append(_activation(n, name, alpha, beta))
    return [out[d * len(defaults) : (d + 1) * len(defaults)] for d in range(directions)]


def _recurrent(n, gates: int, defaults, step):
    """The shared frame: layout, directions, projections, initial states, sequence_lens and the outputs."""
    x, w, r = n.input(0), n.input(1), n.input(2)
    if not dtypes.is_float(x.dtype):
        n.unsupported(f"X has dtype {x.dtype}")
    layout = n.attr("layout", 0)
    if layout:
        x = F.transpose(x, (1, 0, 2))
    seq, batch = x.shape[0], x.shape[1]
    direction = n.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        n.unsupported(f"direction={direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = n.attr("hidden_size", r.shape[-1])
    acts = _activations(n, defaults, dirs)
    clip = n.attr("clip")
    states = 2 if n.op_type == "LSTM" else 1
    mask = None
    if n.has(4):
        lens = F.cast(n.input(4), "int64")
        if not isinstance(seq, int):
            n.unsupported("sequence_lens with a symbolic sequence length")
        steps = F.constant(np.arange(seq, dtype=np.int64).reshape(seq, 1))
        mask = F.expand_dims(F.less(steps, F.reshape(lens, (1, -1))), 2)
    h_final, c_final, ys = [], [], []
    for d in range(dirs):
        wd, rd = F.take(w, d, axis=0), F.take(r, d, axis=0)  # (gates*H, in), (gates*H, H)
        gx = F.matmul(x, F.transpose(wd))
        rb = None
        if n.has(3):
            bd = F.take(n.input(3), d, axis=0)
            wb, rb = F.slice(bd, [0], [gates * hidden]), F.slice(bd, [gates * hidden], [2 * gates * hidden])
            gx = gx + wb
        init = []
        for index in (5, 6)[:states]:
            if n.has(index):
                init.append(F.take(n.input(index), d, axis=0))
            else:
                zero = F.constant(np.zeros(hidden, x.dtype), x.dtype)
                init.append(F.broadcast_to(zero, (batch, hidden)))
        peep = F.take(n.input(7), d, axis=0) if n.op_type == "LSTM" and n.has(7) else None
        rt = F.transpose(rd)

        def body(carry, xs, acts=acts[d], rb=rb, rt=rt, peep=peep):
            gx_t, m = (xs, None) if mask is None else xs
            new = step(n, carry, gx_t, rt, rb, acts, clip, hidden, peep)
            h = new[0]
            if m is not None:
                new = tuple(F.where(m, a, b) for a, b in zip(new, carry))
                h = F.where(m, h, F.zeros_like(h))
            return tuple(new), h

        final, y = F.scan(
            body, tuple(init), gx if mask is None else (gx, mask), reverse=d == 1 or direction == "reverse"
        )
        h_final.append(final[0])
        if states == 2:
            c_final.append(final[1])
        ys.append(y)
    y = F.stack(ys, axis=1)  # (seq, dirs, batch, hidden)
    yh = F.stack(h_final, axis=0)
    yc = F.stack(c_final, axis=0) if c_final else None
    if layout:
        y = F.transpose(y, (2, 0, 1, 3))
        yh = F.transpose(yh, (1, 0, 2))
        yc = F.transpose(yc, (1, 0, 2)) if yc is not None else None
    return [y, yh, yc][: 2 + (states == 2)]


def _clipped(z, clip):
    return z if clip is None else F.maximum(F.minimum(z, clip), -clip)


def _gate(z, k, hidden):
    return F.slice(z, [k * hidden], [(k + 1) * hidden], axes=[1])


def _rnn_step(n, carry, gx_t, rt, rb, acts, clip, hidden, peep):
    (h,) = carry
    z = gx_t + F.matmul(h, rt)
    z = z + rb if rb is not None else z
    return (acts[0](_clipped(z, clip)),)


def _gru_step(n, carry, gx_t, rt, rb, acts, clip, hidden, peep):
    (h,) = carry
    f, g = acts
    hr = F.matmul(h, F.slice(rt, [0], [2 * hidden], axes=[1]))  # z and r gates' recurrent part
    if rb is not None:
        hr = hr + F.slice(rb, [0], [2 * hidden])
    zr = F.slice(gx_t, [0], [2 * hidden], axes=[1]) + hr
    z, r = f(_clipped(_gate(zr, 0, hidden), clip)), f(_clipped(_gate(zr, 1, hidden), clip))
    rh = F.slice(rt, [2 * hidden], [3 * hidden], axes=[1])
    rbh = F.slice(rb, [2 * hidden], [3 * hidden]) if rb is not None else None
    if n.attr("linear_before_reset", 0):
        inner = F.matmul(h, rh)
        inner = inner + rbh if rbh is not None else inner
        cand = _gate(gx_t, 2, hidden) + r * inner
    else:
        inner = F.matmul(r * h, rh)
        cand = _gate(gx_t, 2, hidden) + (inner + rbh if rbh is not None else inner)
    hh = g(_clipped(cand, clip))
    return ((1.0 - z) * hh + z * h,)


def _lstm_step(n, carry, gx_t, rt, rb, acts, clip, hidden, peep):
    h, c = carry
    f, g, act_h = acts
    z = gx_t + F.matmul(h, rt)
    z = z + rb if rb is not None else z
    zi, zo, zf, zc = (_gate(z, k, hidden) for k in range(4))
    if peep is not None:
        pi, po, pf = (F.slice(peep, [k * hidden], [(k + 1) * hidden]) for k in range(3))
        zi, zf = zi + pi * c, zf + pf * c
    i, fg = f(_clipped(zi, clip)), f(_clipped(zf, clip))
    if n.attr("input_forget", 0):
        fg = 1.0 - i
    c_new = fg * c + i * g(_clipped(zc, clip))
    if peep is not None:
        zo = zo + po * c_new
    o = f(_clipped(zo, clip))
    return (o * act_h(c_new), c_new)


@onnx_op("RNN", since=7, attrs=_ATTRS, fold=False)
def _rnn(n):
    return _recurrent(n, 1, ["Tanh"], _rnn_step)


@onnx_op("GRU", since=7, attrs=_ATTRS | {"linear_before_reset"}, fold=False)
def _gru(n):
    return _recurrent(n, 3, ["Sigmoid", "Tanh"], _gru_step)


@onnx_op("LSTM", since=7, attrs=_ATTRS | {"input_forget"}, fold=False)
def _lstm(n):
    return _recurrent(n, 4, ["Sigmoid", "Tanh", "Tanh"], _lstm_step)


# -- Scan -------------------------------------------------------------------------------------------
def _flip(x):
    return F.slice(x, [-1], [-(2**62)], [-1], axes=[0])


def _to_front(x, axis):
    axis = axis % x.ndim
    return x if axis == 0 else F.transpose(x, (axis, *[i for i in range(x.ndim) if i != axis]))


def _from_front(y, axis):
    axis = axis % y.ndim
    if axis == 0:
        return y
    perm = list(range(1, y.ndim))
    perm.insert(axis, 0)
    return F.transpose(y, tuple(perm))


@onnx_op(
    "Scan",
    since=9,
    attrs={
        "body",
        "num_scan_inputs",
        "scan_input_axes",
        "scan_input_directions",
        "scan_output_axes",
        "scan_output_directions",
    },
    fold=False,
)
def _scan(n):
    """ONNX Scan as gc.scan: the body is imported into graphc's traced body (outer values it reads by
    name are captured); an input or output whose direction differs from the loop's is flipped."""
    body = n.attr("body")
    m = n.attr("num_scan_inputs")
    nc = n.num_inputs - m
    ny = len(body.output) - nc
    in_dirs = list(n.attr("scan_input_directions") or [0] * m)
    out_dirs = list(n.attr("scan_output_directions") or [0] * ny)
    in_axes = list(n.attr("scan_input_axes") or [0] * m)
    out_axes = list(n.attr("scan_output_axes") or [0] * ny)
    if m == 0:
        n.unsupported("a Scan without scan inputs")
    reverse = all(d == 1 for d in in_dirs)
    init = [n.input(i) for i in range(nc)]
    xs = []
    for j in range(m):
        x = _to_front(n.input(nc + j), in_axes[j])
        xs.append(_flip(x) if bool(in_dirs[j]) != reverse else x)

    def step(carry, x_t):
        outs = n.body(body, [*carry, *x_t])
        return tuple(outs[:nc]), tuple(outs[nc:])

    final, ys = F.scan(step, tuple(init), tuple(xs), reverse=reverse)
    results = list(final)
    for k, y in enumerate(ys):
        y = _flip(y) if bool(out_dirs[k]) != reverse else y
        results.append(_from_front(y, out_axes[k]))
    return results


# -- Loop -------------------------------------------------------------------------------------------
@onnx_op("Loop", since=1, attrs={"body"}, fold=False)
def _loop(n):
    """ONNX Loop with a trip count known at import and a condition that stays true: gc.scan of that
    length, the iteration number an extra int64 carry; the body's scan outputs are stacked."""
    body = n.attr("body")
    if not n.has(0):
        n.unsupported("a Loop without a trip count (a while loop)")
    (trips,) = n.ints(0, "M")
    if n.has(1) and not bool(n.numbers(1, "cond").reshape(-1)[0]):
        return [n.input(i) for i in range(2, n.num_inputs)] or None
    init = [n.input(i) for i in range(2, n.num_inputs)]
    nc = len(init)
    counter = F.constant(np.asarray(0, np.int64))

    def step(carry, _):
        i, values = carry[0], list(carry[1:])
        yes = F.constant(np.asarray(True))
        outs = n.body(body, [i, yes, *values])
        cond = outs[0]
        if cond is not yes and not (cond.is_const and bool(cond.attrs["value"])):
            n.unsupported("a Loop whose condition the body computes (a while loop)")
        return (i + 1, *outs[1 : 1 + nc]), tuple(outs[1 + nc :])

    final, ys = F.scan(step, (counter, *init), None, length=trips)
    return [*final[1:], *ys]
