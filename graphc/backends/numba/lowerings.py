"""Numba lowerings of library-call ops, registered on the ops (graphc.ops.registry.lowering).

A builder `f(node, in_shapes, out_shape) -> run(out, *inputs)` (or None to use the reference):
matmul through BLAS (NumPy's matmul with out=, outside the JIT: a direct sgemm call with
transposed views passed as BLAS flags), softmax row kernels. Reductions that the loop
generator fuses with their producers declare a ReduceSpec instead (graphc.backends.loopgen).
"""

import math
import threading

import numpy as np

from graphc.backends.numba import accumulate, batch_split, blas
from graphc.backends.numba.lowerings_conv import KERNELS as _KERNELS
from graphc.ops.registry import lowering


@lowering("matmul", "numba")
def _matmul(node, in_shapes, out_shape):
    # transposed operands (views from the backward pass) reach BLAS as its transpose flags:
    # measured no slower than contiguous ones, so nothing is copied
    flops = 2.0 * math.prod(out_shape) * in_shapes[0][-1]
    small = flops < blas.SMALL_FLOPS

    rows = len(in_shapes[0]) >= 3 and len(in_shapes[1]) == 2  # a stack of rows by one matrix

    def flat(out, a):
        """A stack of rows by one matrix as one 2-D product: (out, a) seen as matrices."""
        if not (rows and out.flags.c_contiguous and a.size):
            return out, a
        if not a.flags.c_contiguous:
            # a permuted stack of rows (the time-major view of a batch-first input, x @ W for every
            # step): NumPy would run one small gemm per leading index; copied C-ordered, it is one
            # gemm over all the rows (LSTM x-projection, 50x32x32 by 32x512: 0.40 ms against
            # 0.50-0.67 on 2 threads, measured side by side)
            buf = _scratch(a.shape, a.dtype)
            np.copyto(buf, a)
            a = buf
        return out.reshape(-1, out.shape[-1]), a.reshape(-1, a.shape[-1])

    own, site = accumulate.GemmSite(), accumulate.GemmSite()  # this node's prepared gemm calls

    def run(out, a, b):
        out, a = flat(out, a)
        threads = batch_split.own_threads(flops)
        if threads == 1 or a.ndim != 2 or b.ndim != 2:
            blas.use(1 if small else blas.large)
            np.matmul(a, b, out=out)
            return
        blas.use(1)  # on graphc's threads, one block of the product each
        if own(out, a, b, 1.0, 0.0):
            return
        blocks = batch_split.product_blocks(out.shape[0], out.shape[1], threads)
        batch_split.in_parallel([lambda r=r, c=c: np.matmul(a[r], b[:, c], out=out[r, c]) for r, c in blocks])

    def accumulate_into(out, a, b, alpha, beta, fill=None) -> bool:  # out = alpha * a @ b + beta * (fill or out)
        blas.use(1 if small else blas.large)
        out, a = flat(out, a)
        return site(out, a, b, alpha, beta, fill)

    run.flops = flops  # the executor tunes the thread count of specialisations with large ones
    if len(in_shapes[1]) == 2 and (len(in_shapes[0]) == 2 or rows):  # accumulate.py's AccumulateCall
        run.accumulate = accumulate_into
    if len(in_shapes[0]) == len(in_shapes[1]) == 2:  # as one native call, BLAS threading it (chain.py)
        run.task = lambda out, a, b: accumulate.task(out, a, b, 1.0, 0.0)
        run.accumulate_task = accumulate.task
    return run


_LOCAL = threading.local()


def _scratch(shape, dtype) -> np.ndarray:
    """This thread's scratch array of `shape` (kept for the next call of that shape)."""
    bufs = getattr(_LOCAL, "bufs", None)
    if bufs is None:
        bufs = _LOCAL.bufs = {}
    key = (tuple(shape), np.dtype(dtype).str)
    buf = bufs.get(key)
    if buf is None:
        if len(bufs) > 16:  # shapes that keep changing: do not keep them all
            bufs.clear()
        buf = bufs[key] = np.empty(shape, dtype)
    return buf


def _softmax_builder(take_log):
    def build(node, in_shapes, out_shape):
        ax = node.attrs["axis"]
        shp = in_shapes[0]
        pre = int(np.prod(shp[:ax], dtype=np.int64))
        post = int(np.prod(shp[ax + 1 :], dtype=np.int64))
        three = (pre, shp[ax], post)
        kern = _KERNELS.softmax3

        def run(out, x):
            kern(x.reshape(three), out.reshape(three), take_log)

        return run

    return build


lowering("softmax", "numba")(_softmax_builder(False))
lowering("log_softmax", "numba")(_softmax_builder(True))

# convolution, pooling and label cross-entropy live in their own module; so do a scan's native
# loop and the ops that run inside one (matmul, slice_grad, concat, nested scans)
from graphc.backends.numba import loop_lowerings  # noqa: E402, F401
