"""The LLVM IR of vmath's vectorisable float32 exp and tanh (Cephes polynomials; see vmath.py),
emitted into a kernel by Numba (vmath's intrinsics) and by graphc's own compiler (kernel_ir.py)
alike. `em` is the emitter: its IR builder `em.b`, and `em._intrinsic(name, value, type)`."""

from llvmlite import ir

_F = ir.FloatType()
_I32 = ir.IntType(32)
_C = ("contract",)


def _k(v: float):
    return ir.Constant(_F, float(v))


class _Ops:
    def __init__(self, b):
        self.b = b

    def add(self, x, y):
        return self.b.fadd(x, y, flags=_C)

    def sub(self, x, y):
        return self.b.fsub(x, y, flags=_C)

    def mul(self, x, y):
        return self.b.fmul(x, y, flags=_C)

    def max(self, x, y):  # Python's max(x, y): y if y > x else x
        return self.b.select(self.b.fcmp_ordered(">", y, x), y, x)

    def min(self, x, y):
        return self.b.select(self.b.fcmp_ordered("<", y, x), y, x)

    def poly(self, r, coefs, signs):
        """((((c0 * r + c1) * r ± c2) ...): Horner's form, each step's sign given."""
        y = _k(coefs[0])
        for c, s in zip(coefs[1:], signs):
            y = self.mul(y, r)
            y = self.add(y, _k(c)) if s > 0 else self.sub(y, _k(c))
        return y

    def nan_keep(self, r, x):  # r if x == x else x
        return self.b.select(self.b.fcmp_ordered("==", x, x), r, x)


_MAGIC = 12582912.0
_EXP = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_TANH = (-5.70498872745e-3, 2.06390887954e-2, 5.37397155531e-2, 1.33314422036e-1, 3.33332819422e-1)


def vexp(em, x, finite: bool = False):
    """exp(x); `finite`: x is known to be a number in [-87.3, 88.7] (no clamps, no inf, zero or
    NaN to select: the same bits for such x, fewer instructions)."""
    o, b = _Ops(em.b), em.b
    xc = x if finite else o.min(o.max(x, _k(-87.5)), _k(88.8))
    kf = o.add(o.mul(xc, _k(1.4426950408889634)), _k(_MAGIC))
    fx = o.sub(kf, _k(_MAGIC))
    r = o.add(o.sub(xc, o.mul(fx, _k(0.693359375))), o.mul(fx, _k(2.12194440e-4)))
    z = o.mul(r, r)
    y = o.add(o.add(o.mul(o.poly(r, _EXP, (1,) * 5), z), r), _k(1.0))
    bits = b.shl(b.add(b.bitcast(kf, _I32), ir.Constant(_I32, 126 - 0x4B400000)), ir.Constant(_I32, 23))
    y = o.mul(o.mul(y, b.bitcast(bits, _F)), _k(2.0))
    if finite:
        return y
    y = b.select(b.fcmp_ordered(">", x, _k(88.72283)), _k(float("inf")), y)
    y = b.select(b.fcmp_ordered("<", x, _k(-87.33654)), _k(0.0), y)
    return o.nan_keep(y, x)


def vtanh(em, x):
    o, b = _Ops(em.b), em.b
    a = em._intrinsic("llvm.fabs", x, "f32")
    s = o.mul(x, x)
    p = o.add(o.mul(o.mul(o.poly(s, _TANH, (1, -1, 1, -1)), s), x), x)
    e = vexp(em, o.mul(_k(2.0), o.min(a, _k(20.0))), finite=True)  # in [0, 40], or NaN kept below
    t = o.sub(_k(1.0), b.fdiv(_k(2.0), o.add(e, _k(1.0)), flags=_C))
    t = b.select(b.fcmp_ordered(">=", x, _k(0.0)), t, b.fneg(t, flags=_C))
    r = b.select(b.fcmp_ordered("<", a, _k(0.625)), p, t)
    return o.nan_keep(r, x)
