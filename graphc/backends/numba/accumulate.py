"""A matrix product whose epilogue adds it, scaled, to the array it overwrites: one gemm.

An output-fusable group whose epilogue is `out = alpha * (A @ B) + beta * y`, with `out`
written in place over `y` (an update of a variable: schedule.inplace_updates; SGD's
`w - lr * dW`, momentum's `mu * v + dW`), runs as BLAS's own `C = alpha * A @ B + beta * C`
on the variable's array: the product is never stored and the epilogue's pass over it and the
variable is not made (the 784x512 weight gradient of the mlp workload: 0.54 ms for the gemm
alone, 0.69-0.74 ms with the update after it, measured side by side). Which epilogues are of
that form is found by running the group's ops' references on probe values, not by their names.

Where y is instead a row broadcast over the product's rows (a bias, `x @ W + b`), the output
starts as that row and the gemm adds into it with beta (`AccumulateCall(fill=True)`): one pass
of writes instead of a second read and write of the output; on graphc's threads each block
fills its own rows on its core (team.py's fill trampolines).

At a call whose operands BLAS cannot take as they are laid out (or with no BLAS found), the
group runs as before: the product, then its epilogue kernel.
"""

import ctypes
import weakref

import numpy as np

from graphc.backends.numba import batch_split, blas, native
from graphc.backends.numba.chain import native_step

__all__ = ["affine_epilogue", "AccumulateCall", "GemmSite", "gemm", "prepare", "task"]

# (the product, the other operand): the epilogue is checked at these points, negative and
# mixed ones included, so that a nonlinear op (relu, a product of the two) is not taken as affine
_A = np.array([0.0, 1.0, 0.0, 2.5, -1.5, 0.375, -3.0])
_Y = np.array([0.0, 0.0, 1.0, -0.75, 3.0, -2.0, -0.5])


def affine_epilogue(body, anchor_id, out_id, ctx) -> tuple | None:
    """(y id, alpha, beta) if the epilogue nodes `body` (in order) compute value `out_id` as
    alpha * anchor + beta * y from the anchor's value, one other value y and constants; else None."""
    ids = {n.id for n in body}
    outside = (x for n in body for x in n.inputs if x.id != anchor_id and x.id not in ids and not x.is_const)
    free = list(dict.fromkeys(x.id for x in outside))
    if len(free) != 1 or out_id not in ids:
        return None
    y = free[0]
    vals = {anchor_id: _A, y: _Y}
    try:
        with np.errstate(all="ignore"):
            for n in body:
                ins = [vals[x.id] if x.id in vals else np.asarray(x.attrs["value"], np.float64) for x in n.inputs]
                vals[n.id] = np.asarray(n.opdef.ref(n, ins, ctx), dtype=np.float64)
    except Exception:  # an op that needs its own shapes, or a tuple: not this form
        return None
    out = vals[out_id]
    if out.shape != _A.shape or not np.all(np.isfinite(out)):
        return None
    alpha, beta = float(out[1]), float(out[2])
    if alpha == 0.0 or not np.allclose(out, alpha * _A + beta * _Y, rtol=1e-9, atol=1e-12):
        return None
    return y, alpha, beta


def _layout(x) -> tuple | None:
    """(transposed, leading dimension) of a 2-D array as cblas takes it row-major, or None: the
    rule kernel_blas.py emits as IR for np.dot in graphc's own kernels, here at call time."""
    s, (r, c), (s0, s1) = x.itemsize, x.shape, x.strides
    if (s1 == s or c == 1) and (r == 1 or (s0 % s == 0 and s0 >= c * s)):
        return False, (s0 // s if r > 1 else c)
    if (s0 == s or r == 1) and (c == 1 or (s1 % s == 0 and s1 >= r * s)):
        return True, (s1 // s if c > 1 else r)
    return None


_FUNCS: dict = {}


def _function(dtype: str):
    got = _FUNCS.get(dtype)
    if got is None:
        found = native.blas_function(dtype)
        if found is None:
            got = False
        else:
            address, bits = found
            n = ctypes.c_int64 if bits == 64 else ctypes.c_int32
            f = ctypes.c_float if dtype == "f32" else ctypes.c_double
            i32, ptr = ctypes.c_int32, ctypes.c_void_p
            params = [i32, i32, i32, n, n, n, f, ptr, n, ptr, n, f, ptr, n]  # cblas_?gemm's
            proto = ctypes.CFUNCTYPE(None, *params)
            got = (proto(address), bits)
        _FUNCS[dtype] = got
    return got


_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def gemm(out, a, b, alpha: float, beta: float, fill=None) -> bool:
    """out = alpha * a @ b + beta * out through BLAS, for 2-D float arrays of one dtype; False
    (nothing written) where BLAS cannot take them as they are. `fill`: a contiguous row of out's
    columns (or a 1 x n array) that out is set to first (a bias: out = alpha * a @ b + beta * fill)."""
    run = prepare(out, a, b, alpha, beta, fill)
    if run is None:
        return False
    run()
    return True


class _Call:
    """A gemm's checked operands: cblas's function, its integer width and dtype, the arrays'
    layouts and `fill` (a row of out's width, or None)."""

    __slots__ = ("call", "bits", "dtype", "out", "a", "b", "alpha", "beta", "fill", "la", "lb", "lc")

    def __init__(self, call, bits, dtype, out, a, b, alpha, beta, fill, layouts):
        self.call, self.bits, self.dtype = call, bits, dtype
        self.out, self.a, self.b, self.alpha, self.beta, self.fill = out, a, b, alpha, beta, fill
        self.la, self.lb, self.lc = layouts

    def args(self, rows=slice(None), cols=slice(None)) -> tuple:
        """cblas_?gemm's 14 arguments for a block of out (the same layouts; the operands' rows or
        columns), its operands as addresses."""
        o, x, y = self.out[rows, cols], self.a[rows], self.b[:, cols]
        trans = {False: 111, True: 112}  # CblasNoTrans, CblasTrans
        la, lb, lc = self.la, self.lb, self.lc
        ops = (x.ctypes.data, la[1], y.ctypes.data, lb[1], self.beta, o.ctypes.data, lc[1])
        return (101, trans[la[0]], trans[lb[0]], o.shape[0], o.shape[1], self.a.shape[1], self.alpha, *ops)  # RowMajor


def _checked(out, a, b, alpha: float, beta: float, fill) -> _Call | None:
    """The gemm out = alpha * a @ b + beta * (fill or out) as BLAS takes it, or None where it cannot."""
    dt = _DTYPES.get(a.dtype)
    if dt is None or not (a.dtype == b.dtype == out.dtype) or a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        return None
    (m, k), n = a.shape, b.shape[1]
    if b.shape[0] != k or out.shape != (m, n) or 0 in (m, n, k) or not out.flags.writeable:
        return None
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        return None
    la, lb, lc = _layout(a), _layout(b), _layout(out)
    if la is None or lb is None or lc is None or lc[0]:
        return None
    fn = _function(dt)
    if not fn:
        return None
    call, bits = fn
    if bits < 64 and max(m, n, k, la[1], lb[1], lc[1]) >= 2**31:
        return None
    if fill is not None:
        if fill.ndim != 1:  # a bias kept as 1 x n (or with more leading ones)
            fill = fill.reshape(-1)
        if not _row_of(fill, out):
            return None
    return _Call(call, bits, dt, out, a, b, alpha, beta, fill, (la, lb, lc))


def prepare(out, a, b, alpha: float, beta: float, fill=None, threads: int | None = None):
    """`gemm`'s call for these arrays, checked and laid out once: a function of no arguments that
    computes it (on `threads` of graphc's threads: batch_split.own_threads by default), or None
    where BLAS cannot take them."""
    c = _checked(out, a, b, alpha, beta, fill)
    if c is None:
        return None
    call, fill = c.call, c.fill
    if threads is None:
        threads = batch_split.own_threads(2.0 * out.size * a.shape[1])
    if threads == 1:
        whole = c.args()
        if fill is None:
            return lambda: call(*whole)

        def filled():
            np.copyto(out, fill)
            call(*whole)

        return filled
    from graphc.backends.numba import team  # imported where a product first runs in blocks

    cuts = batch_split.product_blocks(out.shape[0], out.shape[1], threads)
    blocks = [c.args(r, cl) for r, cl in cuts]
    address = native.blas_function(c.dtype)[0]
    # for the native workers; each fills its own block with the row first, on its own core
    rows = [None if fill is None else (fill[cl].ctypes.data, fill.itemsize) for _, cl in cuts]
    tasks = [team.gemm_task(address, c.bits, c.dtype, x, row) for x, row in zip(blocks, rows)]
    # the tasks and blocks hold the operands' addresses only: the caller (or GemmSite, weakly)
    # keeps the arrays; out and the row are the runtime's own

    def in_blocks():
        blas.use(1)
        if all(t is not None for t in tasks):
            batch_split.in_parallel(tasks)
            return
        if fill is not None:
            np.copyto(out, fill)
        batch_split.in_parallel([lambda x=x: call(*x) for x in blocks])

    return in_blocks


def task(out, a, b, alpha: float, beta: float, fill=None, hold: bool = True):
    """`gemm` for these arrays as one native.NativeTask (BLAS threads it as its thread count
    then says); None where BLAS or graphc's native code cannot take them. The task holds the
    arrays; with hold=False it holds none of them, for a caller that runs it only while arrays
    at the same addresses (and of the same shapes and strides) are alive."""
    c = _checked(out, a, b, alpha, beta, fill)
    if c is None:
        return None
    from graphc.backends.numba import team  # its trampolines call cblas from native code

    row = None if c.fill is None else (c.fill.ctypes.data, c.fill.itemsize)
    made = team.gemm_task(native.blas_function(c.dtype)[0], c.bits, c.dtype, c.args(), row)
    if made is not None and hold:
        made.keep = (made.keep, out, a, b, c.fill)  # the task outlives no array it points into
    return made


class GemmSite:
    """`gemm` at one call site of a runtime, whose arrays are mostly the same objects call after
    call (planned buffers, variables, a fed array passed again): the prepared call is kept and
    reused while the arrays, scales and thread count are the ones it was made for. An array's
    data, shape and strides cannot change under the same object without graphc seeing a new
    shape (its feeds are checked against the specialisation's). The operands are held weakly:
    a fed array is not kept alive after the caller drops it."""

    __slots__ = ("memo",)

    def __init__(self):
        self.memo = None  # (out, weakref a, weakref b, fill, alpha, beta, threads, the prepared call)

    def __call__(self, out, a, b, alpha: float, beta: float, fill=None) -> bool:
        threads = batch_split.own_threads(2.0 * out.size * (a.shape[-1] if a.ndim else 0))
        m = self.memo
        if (
            m is not None
            and m[0] is out
            and m[1]() is a
            and m[2]() is b
            and m[3] is fill
            and m[4:7] == (alpha, beta, threads)
            and out.flags.writeable
        ):
            m[7]()
            return True
        run = prepare(out, a, b, alpha, beta, fill, threads)
        self.memo = None if run is None else (out, weakref.ref(a), weakref.ref(b), fill, alpha, beta, threads, run)
        if run is None:
            return False
        run()
        return True


class AccumulateCall:
    """The step of such a group: the product's `fn.accumulate(out, a, b, alpha, beta)` (its
    lowering's gemm on its BLAS thread count: `gemm` here) into the variable's array, or else `product` (the matmul's
    LibraryCall) then `epilogue` (its LoopKernel). `fn`: the product's run function (its flops
    tell the runtime's BLAS tuner this step multiplies)."""

    __slots__ = ("anchor", "out", "y", "alpha", "beta", "product", "epilogue", "fn", "fill")

    def __init__(self, anchor, out, y, alpha, beta, product, epilogue, fill=False):
        self.anchor, self.out, self.y, self.alpha, self.beta = anchor, out, y, alpha, beta
        self.product, self.epilogue, self.fn = product, epilogue, product.fn
        self.fill = fill  # y is a row (a bias) that out is filled with first, not out itself

    def native(self, fixed):
        """The gemm as a chain.NativeStep (fn.accumulate_task), or None."""
        task = getattr(self.fn, "accumulate_task", None)
        if task is None:
            return None
        alpha, beta, fill = self.alpha, self.beta, self.fill

        def make(a, b, out, y):
            if fill:
                return task(out, a, b, alpha, beta, y)
            return task(out, a, b, alpha, beta) if out is y else None

        return native_step(make, [*(x.id for x in self.anchor.inputs), self.out, self.y], fixed, self.fn.flops)

    def run(self, vals, ctx, first):
        a, b = (vals[x.id] for x in self.anchor.inputs)
        out, y = vals[self.out], vals[self.y]
        if self.fill:  # the row broadcast into out as the product starts: writes only, no second pass
            if self.fn.accumulate(out, a, b, self.alpha, self.beta, y):  # gemm checks overlaps and the row
                return
        elif out is y and self.fn.accumulate(out, a, b, self.alpha, self.beta):
            return
        self.product.run(vals, ctx, first)
        self.epilogue.run(vals, ctx, first)


def _row_of(row, out) -> bool:
    """Whether `row` can start every row of `out`: contiguous, of out's dtype and width, apart."""
    same = row.dtype == out.dtype and row.shape == (out.shape[1],) and row.flags.c_contiguous
    return same and not np.may_share_memory(out, row)
