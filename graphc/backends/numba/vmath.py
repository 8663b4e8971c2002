"""Vectorisable float32 exp and tanh for generated kernels, and the reassociable add of their sums.

Numba calls libm's expf/tanhf one element at a time (no SVML here), which stops LLVM from
vectorising a loop. These branch-free versions (Cephes polynomials, range reduction by a
magic-number round and an exponent bit-cast: kernel_vmath.py writes their LLVM IR, for Numba
here and for graphc's own compiler, kernel_ir.py) vectorise to AVX and are accurate to about
2 ulp over the whole float32 range; overflow gives inf, underflow 0, NaN stays NaN.
Only float32 kernels use them; float64 kernels call `math` as written in the templates.
They are intrinsics, emitted into each kernel, so they need no disk cache of their own
(importing this module writes nothing, even on a read-only install).
"""

import math  # noqa: F401  (kept for kernels that import from here)

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from graphc.backends.numba import kernel_vmath


class _Emit:
    """What kernel_vmath's emitters need of the IR builder of a Numba lowering."""

    def __init__(self, builder):
        self.b = builder

    def _intrinsic(self, name, v, t):
        fn = self.b.module.declare_intrinsic(name, [ir.FloatType()])
        return self.b.call(fn, [v], fastmath=("contract",))


def _float32_op(emit):
    """A Numba intrinsic float32(float32) whose code is `emit` (kernel_vmath): Numba types and
    lowers one call, where an inline="always" function is inlined and typed again at every use
    (a kernel with three sigmoids and two tanh took seconds to compile that way)."""

    def typer(typingctx, x):
        if not isinstance(x, (types.Float, types.Integer, types.Boolean)):
            return None
        sig = types.float32(x)

        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[0], x, types.float32)
            return emit(_Emit(builder), v)

        return sig, codegen

    typer.__name__ = emit.__name__
    return intrinsic(typer)


vexp = _float32_op(kernel_vmath.vexp)
vtanh = _float32_op(kernel_vmath.vtanh)


@intrinsic
def radd(typingctx, acc, x):
    """acc + x (x converted to acc's float type) as an add that LLVM may reassociate: the
    reduction loops' accumulators, so that a sum vectorises into partial sums (a strict chain of
    float64 adds runs at one add per 4 cycles). The loop's other arithmetic keeps its order."""
    if not isinstance(acc, types.Float) or not isinstance(x, (types.Float, types.Integer, types.Boolean)):
        return None
    sig = acc(acc, x)

    def codegen(context, builder, signature, args):
        v = context.cast(builder, args[1], x, acc)
        return builder.fadd(args[0], v, flags=("reassoc", "contract"))

    return sig, codegen
