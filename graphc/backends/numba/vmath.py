"""Vectorisable float32 exp and tanh for generated kernels, and the reassociable add of their sums.

Numba calls libm's expf/tanhf one element at a time (no SVML here), which stops LLVM from
vectorising a loop. These branch-free versions (Cephes polynomials, range reduction by a
magic-number round and an exponent bit-cast) vectorise to AVX and are accurate to about
2 ulp over the whole float32 range; overflow gives inf, underflow 0, NaN stays NaN.
Only float32 kernels use them; float64 kernels call `math` as written in the templates.
They are inlined into each kernel, so they need no disk cache of their own (importing this
module writes nothing, even on a read-only install).
"""

import math  # noqa: F401  (kept for kernels that import from here)

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

F = np.float32


@intrinsic
def _i2f(typingctx, x):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _f2i(typingctx, x):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


_MAGIC = F(12582912.0)  # 1.5 * 2**23: adding it rounds to an integer kept in the low mantissa bits


@njit(inline="always", error_model="numpy")
def vexp(x):
    x = F(x)
    xc = min(max(x, F(-87.5)), F(88.8))
    kf = xc * F(1.4426950408889634) + _MAGIC
    fx = kf - _MAGIC
    r = xc - fx * F(0.693359375) + fx * F(2.12194440e-4)
    z = r * r
    y = (((((F(1.9875691500e-4) * r + F(1.3981999507e-3)) * r + F(8.3334519073e-3)) * r
           + F(4.1665795894e-2)) * r + F(1.6666665459e-1)) * r + F(5.0000001201e-1)) * z + r + F(1.0)  # fmt: skip
    # 2**n as two factors so that n = 128 (x near 88.7) does not overflow the exponent field
    y = y * _i2f((_f2i(kf) + np.int32(126 - 0x4B400000)) << np.int32(23)) * F(2.0)
    y = F(np.inf) if x > F(88.72283) else y
    y = F(0.0) if x < F(-87.33654) else y
    return y if x == x else x


@njit(inline="always", error_model="numpy")
def vtanh(x):
    x = F(x)
    a = abs(x)
    s = x * x
    p = ((((F(-5.70498872745e-3) * s + F(2.06390887954e-2)) * s - F(5.37397155531e-2)) * s
          + F(1.33314422036e-1)) * s - F(3.33332819422e-1)) * s * x + x  # fmt: skip
    e = vexp(F(2.0) * min(a, F(20.0)))
    t = F(1.0) - F(2.0) / (e + F(1.0))
    t = t if x >= F(0.0) else -t
    r = p if a < F(0.625) else t
    return r if x == x else x


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
