"""Numba lowerings of library-call ops, registered on the ops (graphc.ops.registry.lowering).

A builder `f(node, in_shapes, out_shape) -> run(out, *inputs)` (or None to use the reference):
matmul through BLAS (NumPy's matmul with out=, outside the JIT: a direct sgemm call with
transposed views passed as BLAS flags), softmax row kernels. Reductions that the loop
generator fuses with their producers declare a ReduceSpec instead (graphc.backends.loopgen).
"""

import math

import numpy as np

from graphc.backends.numba import accumulate, blas
from graphc.backends.numba.lowerings_conv import KERNELS as _KERNELS
from graphc.ops.registry import lowering


@lowering("matmul", "numba")
def _matmul(node, in_shapes, out_shape):
    # transposed operands (views from the backward pass) reach BLAS as its transpose flags:
    # measured no slower than contiguous ones, so nothing is copied
    flops = 2.0 * math.prod(out_shape) * in_shapes[0][-1]
    small = flops < blas.SMALL_FLOPS

    def run(out, a, b):
        blas.use(1 if small else blas.large)
        np.matmul(a, b, out=out)

    run.flops = flops  # the executor tunes the thread count of specialisations with large ones
    if len(in_shapes[0]) == len(in_shapes[1]) == 2:  # out = alpha * a @ b + beta * out (accumulate.py)
        run.accumulate = accumulate.gemm
    return run


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
