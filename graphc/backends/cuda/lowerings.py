"""CUDA lowerings of library-call ops, registered on the ops under the key "cuda".

A builder `f(node, in_shapes, out_shape) -> run(out, *inputs)` on device arrays (`run(*inputs)
-> tuple` for an op with several outputs), called once per shape specialisation; None declines
those shapes (compiling them is then an error naming the op). Elementwise ops and the fusable
reductions need none: their kernels are generated from the op templates (kernels.py).

Ops that move values without computing (reshape, transpose, slice and its gradient, broadcast,
pad, concat, split) share one lowering: their NumPy reference, run once on index probes, gives
for every output element the input element it holds (or a fill value), as index maps copied to
the device once; each call is then one gather (or a fill and a scatter). On the device these
ops copy: no value is a view of another there.

Indices (take, one_hot, integer labels) out of range raise the reference's IndexRangeError:
a fed index array is checked on the host before it is copied up; one computed on the device
sets a flag that is read back after the kernel.
"""

import math

import numpy as np

from graphc.backends.cuda import device
from graphc.backends.cuda import library as lib
from graphc.ir import shapes
from graphc.ops.context import RunContext
from graphc.ops.registry import lowering

CUDA = "cuda"


def _three(shape, ax):
    pre = math.prod(shape[:ax])
    post = math.prod(shape[ax + 1 :])
    return (pre, shape[ax] if len(shape) > ax else 1, post)


# -- ops that move values: index maps from the reference ------------------------------------------
def _ctx(node, in_shapes):
    """A RunContext binding the symbolic dims of node's inputs to their sizes here."""
    env: dict = {}
    for x, s in zip(node.inputs, in_shapes):
        shapes.bind(x.shape, s, env, node.op)
    return RunContext({}, {}, env, 0)


def _probe(node, in_shapes, shift):
    """The reference on inputs holding their global element number + shift (as float64)."""
    args, base = [], 0
    for s in in_shapes:
        size = math.prod(s)
        args.append((np.arange(size, dtype=np.float64) + base + shift).reshape(s))
        base += size
    out = node.opdef.ref(node, args, _ctx(node, in_shapes))
    return [np.asarray(o, np.float64).reshape(-1) for o in (out if node.is_tuple else (out,))]


def _maps(node, in_shapes):
    """Per output: (which elements come from an input: global source numbers, else fill values)."""
    ones, twos = _probe(node, in_shapes, 1.0), _probe(node, in_shapes, 2.0)
    out = []
    for a, b in zip(ones, twos):
        moved = (b - a) == 1.0
        if not np.all(moved | (b == a)):
            return None  # the op computes, or the numbers were not exact: not a pure move
        out.append((moved, a - 1.0))
    return out


class _Move:
    """One output: a gather from one input, or a fill then a scatter per input."""

    def __init__(self, moved, src, in_sizes):
        self.fill = None
        starts = np.cumsum([0, *in_sizes])
        if moved.all() and len(in_sizes) == 1:
            self.gather = lib.upload(src.astype(np.int64))
            return
        self.gather = None
        if not moved.all():
            fills = np.unique(src[~moved] + 1.0)
            self.fill = float(fills[0]) if len(fills) == 1 else None
            if len(fills) > 1:
                raise ValueError("several fill values")
        self.parts = []
        for i in range(len(in_sizes)):
            sel = moved & (src >= starts[i]) & (src < starts[i + 1])
            pos = np.nonzero(sel)[0]
            self.parts.append(
                (i, lib.upload(pos.astype(np.int64)), lib.upload((src[pos] - starts[i]).astype(np.int64)))
            )

    def __call__(self, out, ins):
        if self.gather is not None:
            lib.gather(out, ins[0], self.gather)
            return
        lib.fill(out, 0 if self.fill is None else self.fill)
        for i, pos, src in self.parts:
            lib.scatter(out, ins[i], pos, src)


def _moves(node, in_shapes, out_shape):
    maps = _maps(node, in_shapes)
    if maps is None:
        return None
    sizes = [math.prod(s) for s in in_shapes]
    try:
        moves = [_Move(m, s, sizes) for m, s in maps]
    except ValueError:
        return None
    if node.is_tuple:
        outs = [device.empty(s, dt) for s, (_, dt) in zip(out_shape, node.types)]

        def run_tuple(*ins):
            for mv, o in zip(moves, outs):
                mv(o, ins)
            return outs

        return run_tuple
    (mv,) = moves
    return lambda out, *ins: mv(out, ins)


for _op in ("reshape", "transpose", "slice", "slice_grad", "broadcast_to", "pad", "concat", "split"):
    lowering(_op, CUDA)(_moves)


# -- matmul ---------------------------------------------------------------------------------------
def _batch_offsets(shape, batch):
    """Element offsets of each batch entry of an operand of `shape` broadcast to `batch`."""
    own = tuple(shape[:-2])
    mat = shape[-2] * shape[-1]
    idx = np.arange(math.prod(own), dtype=np.int64).reshape(own) * mat if own else np.zeros((), np.int64)
    return np.broadcast_to(idx.reshape((1,) * (len(batch) - len(own)) + own), batch).reshape(-1)


@lowering("matmul", CUDA)
def _matmul(node, in_shapes, out_shape):
    a, b = in_shapes
    m, k, n = a[-2], a[-1], b[-1]
    batch = tuple(out_shape[:-2])
    nb = math.prod(batch)
    gemm = lib.Gemm(node.dtype, m, n, k, _batch_offsets(a, batch), (k, 1), _batch_offsets(b, batch), (n, 1),
                    np.arange(nb, dtype=np.int64) * (m * n), (n, 1))  # fmt: skip
    return lambda out, x, w: gemm(out, x, w)


# -- softmax, cross-entropy -----------------------------------------------------------------------
def _softmax(take_log):
    def build(node, in_shapes, out_shape):
        three = _three(in_shapes[0], node.attrs["axis"])
        return lambda out, x: lib.softmax(out, x, three, take_log)

    return build


lowering("softmax", CUDA)(_softmax(False))
lowering("log_softmax", CUDA)(_softmax(True))


class _Flag:
    """A device flag an index kernel sets on an index out of range; `check` reads it back
    (4 bytes) and, if set, runs the reference on the inputs copied down, which raises the
    reference's error naming the op and the index. `skip`: the index input is fed, and the
    runtime checks it on the host before copying it up (then nothing is read back)."""

    def __init__(self, node, in_shapes, out_shape):
        self.node, self.skip = node, False
        self.flag = lib.upload(np.zeros(1, np.int32))
        self.ctx = _ctx(node, in_shapes)
        shapes.bind(node.shape, out_shape, self.ctx.env, node.op)

    def check(self, ins):
        if self.skip:
            return
        got = self.flag.copy_to_host()
        if got[0]:
            self.flag.copy_to_device(np.zeros(1, np.int32))
            self.node.opdef.ref(self.node, [x.copy_to_host() for x in ins], self.ctx)


def _indexed(run, flag, pos: int, lo: int, hi: int):
    """run, marked as reading indices at input `pos` that must lie in [lo, hi) (Runtime)."""
    run.index, run.flag = (pos, lo, hi), flag
    return run


@lowering("cross_entropy_labels", CUDA)
def _ce_labels(node, in_shapes, out_shape):
    three = _three(in_shapes[0], node.attrs["axis"])
    flag = _Flag(node, in_shapes, out_shape)

    def run(out, x, labels):
        lib.ce_labels(out, x, labels, three, flag.flag)
        flag.check((x, labels))

    return _indexed(run, flag, 1, 0, three[1])


@lowering("cross_entropy_labels_grad", CUDA)
def _ce_labels_grad(node, in_shapes, out_shape):
    three = _three(in_shapes[0], node.attrs["axis"])
    flag = _Flag(node, in_shapes, out_shape)

    def run(out, x, labels, g):
        lib.ce_labels_grad(out, x, labels, g, three, flag.flag)
        flag.check((x, labels, g))

    return _indexed(run, flag, 1, 0, three[1])


@lowering("cross_entropy_probs", CUDA)
def _ce_probs(node, in_shapes, out_shape):
    three = _three(in_shapes[0], node.attrs["axis"])
    return lambda out, x, t: lib.ce_probs(out, x, t, three)


@lowering("argmax", CUDA)
def _argmax(node, in_shapes, out_shape):
    three = _three(in_shapes[0], node.attrs["axis"])
    return lambda out, x: lib.argmax(out, x, three)


@lowering("shape_size", CUDA)
def _shape_size(node, in_shapes, out_shape):
    value = math.prod(in_shapes[0][i] for i in node.attrs["axes"])
    return lambda out, x: lib.fill(out, value)


# -- indices ----------------------------------------------------------------------------------------
@lowering("one_hot", CUDA)
def _one_hot(node, in_shapes, out_shape):
    three = _three(out_shape, node.attrs["axis"])
    flag = _Flag(node, in_shapes, out_shape)

    def run(out, labels):
        lib.one_hot(out, labels, three, flag.flag)
        flag.check((labels,))

    return _indexed(run, flag, 0, 0, three[1])


def _take(kernel, on_input: bool):
    """take's or take_grad's lowering: `kernel` (lib.take, lib.take_grad) gathers along (or
    scatter-adds back into) the axis of input 0 (`on_input`) or of the output."""

    def build(node, in_shapes, out_shape):
        a, idx = in_shapes
        three, k = _three(a if on_input else out_shape, node.attrs["axis"]), math.prod(idx)
        flag = _Flag(node, in_shapes, out_shape)
        lo = -three[1] if node.attrs.get("negative", True) else 0

        def run(out, a, idx):
            kernel(out, a, idx, three, k, flag.flag, lo)
            flag.check((a, idx))

        return _indexed(run, flag, 1, lo, three[1])

    return build


lowering("take", CUDA)(_take(lib.take, on_input=True))
lowering("take_grad", CUDA)(_take(lib.take_grad, on_input=False))


@lowering("sequence_mask", CUDA)
def _sequence_mask(node, in_shapes, out_shape):
    flag = _Flag(node, in_shapes, out_shape)

    def run(out, lengths):
        lib.sequence_mask(out, lengths, flag.flag)
        flag.check((lengths,))

    return _indexed(run, flag, 0, 0, out_shape[-1] + 1)


from graphc.backends.cuda import lowerings_conv, scan  # noqa: E402, F401  (convolution, pooling; the scan)
