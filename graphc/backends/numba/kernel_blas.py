"""`np.dot(a, b, out)` of 2-D float arrays in graphc's own kernel compiler (kernel_ir.py): a BLAS gemm.

The product of (m, k) by (k, n) into a C-ordered (m, n) `out`, as Numba's np.dot computes it:
each operand laid out by rows (a strided block of a wider matrix included) or by columns (a
transposed view) is given to cblas_sgemm/dgemm as it is, with its leading dimension and
transpose flag; any other layout (or an empty product) runs a plain loop instead, so every
layout gives the product (Numba copies such an operand first). The gemm is NumPy's OpenBLAS
(the one graphc's other products run on) or else SciPy's (native.blas_gemm: its address is
added to the engine when the code is loaded), libraries the BLAS thread count (blas.py) drives.
"""

from llvmlite import ir

from graphc.backends.numba import kernel_small_gemm, native
from graphc.backends.numba.kernel_types import ITEMSIZE, LL, ArrayType, Unsupported

__all__ = ["emit_dot"]

_I64, _I32, _PTR = LL["i64"], LL["i32"], ir.PointerType()
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enums


def emit_dot(em, args) -> None:
    """Emit np.dot(a, b, out) in emitter `em` for argument expressions `args`."""
    if len(args) != 3:
        raise Unsupported("np.dot without its out argument")
    a, b, c = (em.array(x) for x in args)
    types = [x.type for x in (a, b, c)]
    dt = types[0].dtype
    if any(not isinstance(t, ArrayType) or t.ndim != 2 or t.dtype != dt for t in types) or dt not in ("f32", "f64"):
        raise Unsupported("np.dot of other than 2-D float arrays of one dtype")
    if not types[2].writeable:
        raise Unsupported("np.dot into a read-only array")
    found = native.blas_gemm(dt)
    if found is None:
        raise Unsupported("no BLAS to call")
    sym, bits = found
    blas_int = ir.IntType(bits)
    B = em.b
    m, k, n = a.shape[0], a.shape[1], b.shape[1]
    size = ir.Constant(_I64, ITEMSIZE[dt])
    one, zero = ir.Constant(_I64, 1), ir.Constant(_I64, 0)

    def major(inner_n, inner_s, outer_n, outer_s):
        """(fits, leading dimension) of a matrix read with unit stride along its inner axis."""
        unit = B.or_(B.icmp_signed("==", inner_n, one), B.icmp_signed("==", inner_s, size))
        aligned = B.icmp_signed("==", B.srem(outer_s, size), zero)
        whole = B.and_(aligned, B.icmp_signed(">=", outer_s, B.mul(inner_n, size)))  # rows do not overlap
        fits = B.and_(unit, B.or_(B.icmp_signed("==", outer_n, one), whole))
        return fits, B.select(B.icmp_signed("==", outer_n, one), inner_n, B.sdiv(outer_s, size))

    def layout(x, rows, cols):
        """(ok, transposed, leading dimension) of operand x at run time."""
        s0, s1 = x.strides
        by_rows, ld_rows = major(cols, s1, rows, s0)  # row-major: unit stride along a row
        by_cols, ld_cols = major(rows, s0, cols, s1)  # column-major: a transposed operand
        return B.or_(by_rows, by_cols), B.not_(by_rows), B.select(by_rows, ld_rows, ld_cols)

    oka, ta, lda = layout(a, m, k)
    okb, tb, ldb = layout(b, k, n)
    okc, tc, ldc = layout(c, m, n)
    nonempty = B.and_(B.and_(B.icmp_signed(">", m, zero), B.icmp_signed(">", n, zero)), B.icmp_signed(">", k, zero))
    if bits < 64:  # sizes and leading dimensions a 32-bit BLAS takes (larger ones: the plain loop)
        big = ir.Constant(_I64, 2**31 - 1)
        for v in (m, n, k, lda, ldb, ldc):
            nonempty = B.and_(nonempty, B.icmp_signed("<=", v, big))
    use_gemm = B.and_(B.and_(B.and_(oka, okb), B.and_(okc, B.not_(tc))), nonempty)
    gemm_b, loop_b, done_b = (em.func.append_basic_block(x) for x in ("gemm", "dot.loop", "dot.done"))
    B.cbranch(use_gemm, gemm_b, loop_b)

    B.position_at_end(gemm_b)
    if dt == "f32":  # a step's small product: the register-blocked kernel, not cblas (kernel_small_gemm.py)
        small_b, blas_b = em.func.append_basic_block("dot.small"), em.func.append_basic_block("dot.blas")
        width = ir.Constant(_I64, kernel_small_gemm.lanes())
        rows_ok = B.icmp_signed("<=", m, ir.Constant(_I64, kernel_small_gemm.MAX_ROWS))
        cols_ok = B.icmp_signed("==", B.srem(n, width), zero)
        b_ok = B.icmp_signed("<=", B.mul(n, k), ir.Constant(_I64, kernel_small_gemm.MAX_B))
        plain = B.and_(B.not_(ta), B.not_(tb))
        B.cbranch(B.and_(B.and_(plain, rows_ok), B.and_(cols_ok, b_ok)), small_b, blas_b)
        B.position_at_end(small_b)
        B.call(kernel_small_gemm.declare(em.module), [a.data, lda, b.data, ldb, c.data, ldc, m, n, k])
        B.branch(done_b)
        B.position_at_end(blas_b)
    f = LL[dt]
    n_ = blas_int
    params = [_I32, _I32, _I32, n_, n_, n_, f, _PTR, n_, _PTR, n_, f, _PTR, n_]  # cblas_?gemm
    fnty = ir.FunctionType(ir.VoidType(), params)
    fn = em.module.globals.get(sym) or ir.Function(em.module, fnty, name=sym)

    def trans(t):
        return B.select(t, ir.Constant(_I32, _TRANS), ir.Constant(_I32, _NO_TRANS))

    m_, n_, k_, lda, ldb, ldc = (B.trunc(v, blas_int) if bits < 64 else v for v in (m, n, k, lda, ldb, ldc))
    B.call(fn, [ir.Constant(_I32, _ROW_MAJOR), trans(ta), trans(tb), m_, n_, k_, ir.Constant(f, 1.0), a.data, lda,
                b.data, ldb, ir.Constant(f, 0.0), c.data, ldc])  # fmt: skip
    B.branch(done_b)

    B.position_at_end(loop_b)  # any other layout, or an empty product: out[i, j] = sum over p

    def at(x, i, j):
        off = B.add(B.mul(i, x.strides[0]), B.mul(j, x.strides[1]))
        return B.gep(x.data, [off], source_etype=LL["i8"])

    acc = em.alloca_b.alloca(f, name="dot.acc")

    def row(i):
        def col(j):
            B.store(ir.Constant(f, 0.0), acc)

            def term(p):
                x = B.load(at(a, i, p), typ=f)
                y = B.load(at(b, p, j), typ=f)
                B.store(B.fadd(B.load(acc, typ=f), B.fmul(x, y)), acc)

            em._loop(zero, k, 1, "i64", term)
            B.store(B.load(acc, typ=f), at(c, i, j))

        em._loop(zero, n, 1, "i64", col)

    em._loop(zero, m, 1, "i64", row)
    B.branch(done_b)
    B.position_at_end(done_b)
