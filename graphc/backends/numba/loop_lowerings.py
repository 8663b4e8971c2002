"""Lowerings of ops inside a native loop (numba/scan_loop.py), registered on the ops.

Key IN_LOOP: a builder `f(node, in_shapes, out_shape) -> LoopCall | None` gives a statement that
the loop's driver runs on the op's arguments (its inputs, then its outputs: planned buffers),
inside compiled code; None declines those shapes (the scan then runs its reference loop). Key
"numba" on the scan itself: its native loop (scan_loop.numba_scan), writing the scan's outputs
into the memory the enclosing schedule gives them (schedule.WritesOutputs).
"""

import math

import numpy as np

from graphc.backends.numba.loop_copies import block_copy, copy_loops, fill_loops
from graphc.backends.numba.scan_body import IN_LOOP, LoopCall, NotNative
from graphc.backends.numba.scan_loop import DRIVER_PARAMS, ScanLoop, numba_scan
from graphc.backends.schedule import WritesOutputs
from graphc.ops.registry import lowering

__all__ = ["NestedScan"]

_FLOATS = ("float32", "float64")  # what BLAS multiplies


class _Dot(LoopCall):
    """np.dot of (rows, k) by (k, n) into the planned buffer, or one per batch entry: the operands
    are seen as matrices (a stack of them) through views cut at binding."""

    def __init__(self, views: tuple, flops: float, batched: bool):
        if batched:
            call = "for q in range({p}[2].shape[0]): np.dot({p}[0][q], {p}[1][q], {p}[2][q])"
        else:
            call = "np.dot({p}[0], {p}[1], {p}[2])"
        super().__init__(call, flops=flops, label="np.dot" + (" per batch entry" if batched else ""))
        self.views = views

    def args(self, inputs, outputs):
        out = []
        for a, shape in zip((*inputs, *outputs), self.views):
            v = a.reshape(shape)
            if v.size and not np.shares_memory(v, a):
                raise NotNative(f"a matmul operand {a.shape} cannot be seen as {shape} without a copy")
            out.append(v)
        return tuple(out)


@lowering("matmul", IN_LOOP)
def _dot(node, in_shapes, out_shape):
    """A matrix product in BLAS (Numba's np.dot calls gemm; an operand that is neither C- nor
    F-contiguous, a strided slice, is copied first): matrices, a stack of rows times a matrix
    (one product), or stacks of equal batch shape (one product per entry). Broadcast batch
    axes are declined."""
    a, b = in_shapes
    if node.dtype not in _FLOATS:
        return None
    m, k, n = a[-2], a[-1], b[-1]
    rows = math.prod(a[:-1])
    if len(b) == 2:
        return _Dot(((rows, k), (k, n), (rows, n)), 2.0 * rows * k * n, False)
    if tuple(a[:-2]) != tuple(b[:-2]):
        return None
    q = math.prod(a[:-2])
    return _Dot(((q, m, k), (q, k, n), (q, m, n)), 2.0 * q * m * k * n, True)


@lowering("slice_grad", IN_LOOP)
def _slice_grad(node, in_shapes, out_shape):
    """Zeros with the gradient written into the sliced region (the bounds are attributes)."""
    if not out_shape:
        return None
    entries = node.attrs["index"]
    rank = len(out_shape)
    if all(e is None or (e[2] == 1 and e[0] >= 0) for e in entries):  # a block: loops from its start
        copy = block_copy("{p}[0]", "{p}[1]", [0 if e is None else e[0] for e in entries], into=True)
    else:

        def at(idx):
            return [i if e is None else f"{e[0]} + {e[2]} * {i}" for e, i in zip(entries, idx)]

        copy = copy_loops("{p}[0]", "{p}[1]", rank, at)
    return LoopCall(fill_loops("{p}[1]", rank, "0") + "\n" + copy, label="slice_grad")


@lowering("concat", IN_LOOP)
def _concat(node, in_shapes, out_shape):
    """Each input copied into its part of the planned buffer."""
    ax, out, off = node.attrs["axis"], len(in_shapes), 0
    parts = []
    for i, s in enumerate(in_shapes):
        if s[ax]:
            starts = [off if d == ax else 0 for d in range(len(s))]
            parts.append(block_copy(f"{{p}}[{i}]", f"{{p}}[{out}]", starts, into=True))
        off += s[ax]
    return LoopCall("\n".join(parts) or "pass", label="concat")


class NestedScan(LoopCall):
    """A scan inside a body: its own driver, called from the outer driver on the outer plan's
    fixed buffers (its arguments bound whenever the outer ones are)."""

    def __init__(self, loop: ScanLoop):
        nargs = len(DRIVER_PARAMS) + len(loop.plan.steps)
        call = "{f}(" + ", ".join(f"{{p}}[{i}]" for i in range(nargs)) + ")"
        super().__init__(call, (loop.driver.py_func.__module__, "kernel"), loop.plan.flops, "nested scan")
        self.loop = loop
        self._stale = False

    def args(self, inputs, outputs):
        lp = self.loop
        nc, nx, ny = lp.nc, lp.nx, lp.ny
        fixed, self._stale = lp.bind_body(inputs[nc + nx :])
        return lp.call_args(inputs[:nc], inputs[nc : nc + nx], outputs[:nc], outputs[nc : nc + ny],
                            outputs[nc + ny :], fixed)  # fmt: skip

    @property
    def stale(self) -> bool:
        return self._stale

    def compile(self, args):
        self.loop.compile(args)

    def describe(self):
        return self.loop.describe()


@lowering("scan", IN_LOOP)
def _nested_scan(node, in_shapes, out_shapes):
    try:
        return NestedScan(ScanLoop(node, in_shapes, out_shapes, nested=True))  # tuple-form driver
    except NotNative as e:
        raise NotNative(f"nested {e}") from None


lowering("scan", "numba")(WritesOutputs(numba_scan))  # into memory the enclosing schedule plans
