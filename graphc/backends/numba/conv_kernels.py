"""Numba kernels for convolution, pooling, softmax rows and label cross-entropy (used by
lowerings_conv.py and lowerings.py).

Module-level @njit(cache=True) functions: Numba compiles each once per argument types and keeps
the machine code beside this file (or under NUMBA_CACHE_DIR), so a second process loads them.
Importing this module imports Numba; lowerings_conv imports it only when a builder runs.

All kernels write every element of their output (no caller-side zeroing), accept any strides,
and take geometry as plain ints. The innermost loops run along W; stride 1 has its own loop so
LLVM sees unit-stride loads and vectorises it. fastmath={'contract'} (FMA) only, as codegen.py.
"""

import math

import numpy as np
from numba import njit, types, uint64
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic

_OPTS = dict(cache=True, fastmath={"contract"}, error_model="numpy", nogil=True)


@intrinsic
def _flat(typingctx, a):
    """The 1-D view of a C-contiguous array, made in place: Numba's reshape calls a runtime helper
    (numba_attempt_nocopy_reshape), which would keep these kernels from loading without Numba."""
    if not isinstance(a, types.Array) or a.layout != "C":
        return None
    flat = a.copy(ndim=1, layout="C")

    def codegen(context, builder, signature, args):
        src = context.make_array(a)(context, builder, value=args[0])
        dst = context.make_array(flat)(context, builder)
        one = cgutils.pack_array(builder, [src.nitems])
        step = cgutils.pack_array(builder, [src.itemsize])
        context.populate_array(
            dst, data=src.data, shape=one, strides=step, itemsize=src.itemsize, meminfo=src.meminfo, parent=src.parent
        )
        return impl_ret_borrowed(context, builder, flat, dst._getvalue())

    return flat(a), codegen


@njit(inline="always", **_OPTS)
def _span(off, s, size, n_out):
    """Output positions o in [lo, hi) whose input index o*s + off lies in [0, size)."""
    lo = max(0, (s - 1 - off) // s)
    hi = min(n_out, (size - 1 - off) // s + 1)
    return lo, max(lo, hi)


_8 = uint64(8)
_I = (uint64(0), uint64(1), uint64(2), uint64(3), uint64(4), uint64(5), uint64(6), uint64(7))


@njit(inline="always", **_OPTS)
def _copy_row(dst, d, src, s, m):
    """dst[d:d+m] = src[s:s+m], 8 at a time written out: the SLP vectoriser makes each block one
    vector move, while the loop vectoriser needs 64 floats (AVX-512, 4x interleaved) before its
    vector loop runs, and conv rows are 8-28 long (LeNet conv2's im2col: 0.34 ms as a plain loop,
    a loop of 8 or slices, 0.15 ms so)."""
    j = uint64(0)
    i0, i1, i2, i3, i4, i5, i6, i7 = _I
    while j + _8 <= m:
        a, b = s + j, d + j
        x0, x1, x2, x3 = src[a + i0], src[a + i1], src[a + i2], src[a + i3]
        x4, x5, x6, x7 = src[a + i4], src[a + i5], src[a + i6], src[a + i7]
        dst[b + i0], dst[b + i1], dst[b + i2], dst[b + i3] = x0, x1, x2, x3
        dst[b + i4], dst[b + i5], dst[b + i6], dst[b + i7] = x4, x5, x6, x7
        j += _8
    while j < m:
        dst[d + j] = src[s + j]
        j += i1


@njit(inline="always", **_OPTS)
def _fill(dst, d, m, v):
    for j in range(m):
        dst[d + j] = v


@njit(**_OPTS)
def im2col(x, cols, kh_, kw_, sh, sw, ph, pw, dh, dw):
    """cols[n, (c*KH + kh)*KW + kw, oh, ow] = x[n, c, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] (0 outside).

    Both C-contiguous. Flat indices are uint64: a signed index costs a negative-index check per
    element that stops vectorisation (measured 1.2 ms -> 0.2 ms for the LeNet conv1 columns).
    The rows and columns inside the input are found once per kernel position ([r0, r1) x [lo, hi)),
    so a row costs no bounds test: LeNet conv2's rows are 8 long."""
    n_, c_, h_, w_ = x.shape
    ho, wo = cols.shape[2], cols.shape[3]
    xf = _flat(x)
    cf = _flat(cols)
    zero = xf[0] * 0 if xf.size else 0
    usw, uwo = uint64(sw), uint64(wo)
    for n in range(n_):
        for c in range(c_):
            xb = (n * c_ + c) * h_ * w_
            for kh in range(kh_):
                r0, r1 = _span(kh * dh - ph, sh, h_, ho)
                for kw in range(kw_):
                    db = uint64(((n * c_ + c) * kh_ * kw_ + kh * kw_ + kw) * ho * wo)
                    off = kw * dw - pw
                    lo, hi = _span(off, sw, w_, wo)
                    ulo, m = uint64(lo), uint64(hi - lo)
                    _fill(cf, db, uint64(r0) * uwo, zero)
                    s0 = uint64(xb + (r0 * sh - ph + kh * dh) * w_ + off + lo * sw)  # row r0's first in-range element
                    ustep = uint64(sh * w_)
                    if sw == 1 and m == uwo:  # whole rows in range, unit stride: the common case, alone
                        for oh in range(r1 - r0):
                            _copy_row(cf, db + uint64(r0 + oh) * uwo, xf, s0 + uint64(oh) * ustep, m)
                    else:
                        for oh in range(r1 - r0):
                            d = db + uint64(r0 + oh) * uwo
                            src = s0 + uint64(oh) * ustep
                            _fill(cf, d, ulo, zero)
                            for j in range(m):
                                cf[d + ulo + j] = xf[src + j * usw]
                            _fill(cf, d + ulo + m, uwo - ulo - m, zero)
                    _fill(cf, db + uint64(r1) * uwo, uint64(ho - r1) * uwo, zero)


@njit(**_OPTS)
def col2im(cols, x, kh_, kw_, sh, sw, ph, pw, dh, dw):
    """The adjoint of im2col: x = sum over kernel positions of cols scattered back (x overwritten).

    Both C-contiguous; uint64 indices and the in-range rows and columns as in im2col."""
    n_, c_, h_, w_ = x.shape
    ho, wo = cols.shape[2], cols.shape[3]
    xf = _flat(x)
    cf = _flat(cols)
    xf[:] = 0
    usw, uwo = uint64(sw), uint64(wo)
    for n in range(n_):
        for c in range(c_):
            xb = (n * c_ + c) * h_ * w_
            for kh in range(kh_):
                r0, r1 = _span(kh * dh - ph, sh, h_, ho)
                for kw in range(kw_):
                    off = kw * dw - pw
                    lo, hi = _span(off, sw, w_, wo)
                    ulo, m = uint64(lo), uint64(hi - lo)
                    sb = uint64(((n * c_ + c) * kh_ * kw_ + kh * kw_ + kw) * ho * wo)
                    d0 = uint64(xb + (r0 * sh - ph + kh * dh) * w_ + off + lo * sw)
                    ustep = uint64(sh * w_)
                    for oh in range(r1 - r0):
                        s = sb + uint64(r0 + oh) * uwo + ulo
                        dst = d0 + uint64(oh) * ustep
                        if sw == 1:  # a plain loop: added 8 at a time as in _copy_row it was 1.7x slower
                            for j in range(m):
                                xf[dst + j] += cf[s + j]
                        else:
                            for j in range(m):
                                xf[dst + j * usw] += cf[s + j]


# -- pooling (padding: -inf for max, excluded or counted as 0 for the mean) -------------------
# Flat uint64 indices over C-contiguous arrays, as in im2col; a window is [a0, a1) x [b0, b1).
@njit(inline="always", **_OPTS)
def _window(o, s, p, k, size):
    r0 = o * s - p
    return r0, max(r0, 0), min(r0 + k, size)


@njit(inline="always", **_OPTS)
def _beats(v, best):
    """v replaces the running first maximum best: larger, or the first NaN (as np.argmax)."""
    return (v > best) | ((v != v) & (best == best))


@njit(**_OPTS)
def _max_pool_2x2(x, out):
    """max_pool for 2x2 windows at stride 2, no padding, unrolled: the general loop's run-time
    sized window does not vectorise (LeNet's 64x6x24x24: 0.33 ms, against 0.04 ms here)."""
    n_, c_, h_, w_ = x.shape
    ho, wo = out.shape[2], out.shape[3]
    xf = _flat(x)
    of = _flat(out)
    one, w = uint64(1), uint64(w_)
    for p in range(n_ * c_):
        for oh in range(ho):
            r0 = uint64((p * h_ + 2 * oh) * w_)
            ob = uint64((p * ho + oh) * wo)
            for ow in range(uint64(wo)):
                q = r0 + uint64(2) * ow
                best = xf[q]
                for at in (q + one, q + w, q + w + one):
                    v = xf[at]
                    best = v if _beats(v, best) else best
                of[ob + ow] = best


@njit(**_OPTS)
def max_pool(x, out, kh_, kw_, sh, sw, ph, pw):
    if kh_ == kw_ == sh == sw == 2 and ph == pw == 0:
        _max_pool_2x2(x, out)
        return
    n_, c_, h_, w_ = x.shape
    ho, wo = out.shape[2], out.shape[3]
    xf = _flat(x)
    of = _flat(out)
    for p in range(n_ * c_):
        xb = p * h_ * w_
        for oh in range(ho):
            _, a0, a1 = _window(oh, sh, ph, kh_, h_)
            for ow in range(wo):
                _, b0, b1 = _window(ow, sw, pw, kw_, w_)
                m = -np.inf
                for ih in range(a0, a1):
                    row = uint64(xb + ih * w_)
                    for iw in range(b0, b1):
                        v = xf[row + uint64(iw)]
                        m = v if (v > m or v != v) else m  # NaN wins, as np.max
                of[uint64((p * ho + oh) * wo + ow)] = m


@njit(inline="always", **_OPTS)
def _argmax(xf, xb, oh, ow, h_, w_, kh_, kw_, sh, sw, ph, pw):
    """Flat index of the window's first maximum, as np.argmax over the -inf-padded window;
    -1 when that is a padding position (every real element is -inf and the window starts in
    the padding)."""
    r0, a0, a1 = _window(oh, sh, ph, kh_, h_)
    c0, b0, b1 = _window(ow, sw, pw, kw_, w_)
    best = -np.inf
    at = xb + r0 * w_ + c0 if (r0 >= 0 and c0 >= 0) else -1
    for ih in range(a0, a1):
        row = xb + ih * w_
        for iw in range(b0, b1):
            v = xf[uint64(row + iw)]
            if v > best or (v != v and best == best):
                best = v
                at = row + iw
    return at


@njit(**_OPTS)
def _max_pool_grad_2x2(x, g, out):
    """max_pool_grad for 2x2 windows at stride 2, no padding (the common pool), unrolled.

    Branch-free: the window's winner k (0..3, row-major) is integer arithmetic on the compares,
    its four outputs are zeroed and g stored at the winner's address. Written with selects, LLVM
    kept branches that mispredict on random data (LeNet's 64x6x24x24: 0.67 ms, against 0.23 ms
    here). Every element of out is written, so there is no zeroing pass. First maximum and first
    NaN win, as np.argmax over the window in row-major order.
    """
    n_, c_, h_, w_ = x.shape
    ho, wo = g.shape[2], g.shape[3]
    xf = _flat(x)
    gf = _flat(g)
    of = _flat(out)
    one, w = uint64(1), uint64(w_)
    for p in range(n_ * c_):
        xb = uint64(p * h_ * w_)
        for oh in range(ho):
            r0 = uint64((p * h_ + 2 * oh) * w_)
            gb = uint64((p * ho + oh) * wo)
            for ow in range(uint64(wo)):
                q = r0 + uint64(2) * ow
                a, b, c, d = xf[q], xf[q + one], xf[q + w], xf[q + w + one]
                tb = uint64(_beats(b, a))
                m = max(a, b) if a == a else a  # the running maximum, NaN kept, without a select
                m = b if b != b and a == a else m
                tc = uint64(_beats(c, m))
                m = max(m, c) if m == m else m
                m = c if c != c and m == m else m
                td = uint64(_beats(d, m))
                k = tb
                k = tc * uint64(2) + (one - tc) * k
                k = td * uint64(3) + (one - td) * k
                gv = gf[gb + ow]
                z = gv * 0
                of[q] = z
                of[q + one] = z
                of[q + w] = z
                of[q + w + one] = z
                of[q + (k & one) + (k >> one) * w] = gv
        for i in range(2 * ho, h_):  # a row or column that no window covers (odd sizes)
            for j in range(w_):
                of[xb + uint64(i * w_ + j)] = 0
        for i in range(2 * ho):
            for j in range(2 * wo, w_):
                of[xb + uint64(i * w_ + j)] = 0


@njit(**_OPTS)
def max_pool_grad(x, g, out, kh_, kw_, sh, sw, ph, pw):
    """out (x's shape) = g routed to each window's first maximum of x."""
    if kh_ == kw_ == sh == sw == 2 and ph == pw == 0:
        _max_pool_grad_2x2(x, g, out)
        return
    n_, c_, h_, w_ = x.shape
    ho, wo = g.shape[2], g.shape[3]
    xf = _flat(x)
    gf = _flat(g)
    of = _flat(out)
    of[:] = 0
    for p in range(n_ * c_):
        xb = p * h_ * w_
        for oh in range(ho):
            for ow in range(wo):
                at = _argmax(xf, xb, oh, ow, h_, w_, kh_, kw_, sh, sw, ph, pw)
                if at >= 0:
                    of[uint64(at)] += gf[uint64((p * ho + oh) * wo + ow)]


@njit(**_OPTS)
def max_pool_gather(x, h, out, kh_, kw_, sh, sw, ph, pw):
    """out (pooled shape) = h read at each window's first maximum of x (0 in the padding)."""
    n_, c_, h_, w_ = x.shape
    ho, wo = out.shape[2], out.shape[3]
    xf = _flat(x)
    hf = _flat(h)
    of = _flat(out)
    for p in range(n_ * c_):
        xb = p * h_ * w_
        for oh in range(ho):
            for ow in range(wo):
                at = _argmax(xf, xb, oh, ow, h_, w_, kh_, kw_, sh, sw, ph, pw)
                of[uint64((p * ho + oh) * wo + ow)] = hf[uint64(at)] if at >= 0 else 0


@njit(inline="always", **_OPTS)
def _count(a0, a1, b0, b1, kh_, kw_, include_pad):
    return kh_ * kw_ if include_pad else (a1 - a0) * (b1 - b0)


@njit(**_OPTS)
def avg_pool(x, out, kh_, kw_, sh, sw, ph, pw, include_pad):
    n_, c_, h_, w_ = x.shape
    ho, wo = out.shape[2], out.shape[3]
    xf = _flat(x)
    of = _flat(out)
    zero = xf[0] * 0 if xf.size else 0
    for p in range(n_ * c_):
        xb = p * h_ * w_
        for oh in range(ho):
            _, a0, a1 = _window(oh, sh, ph, kh_, h_)
            for ow in range(wo):
                _, b0, b1 = _window(ow, sw, pw, kw_, w_)
                s = zero
                for ih in range(a0, a1):
                    row = uint64(xb + ih * w_)
                    for iw in range(b0, b1):
                        s += xf[row + uint64(iw)]
                of[uint64((p * ho + oh) * wo + ow)] = s / _count(a0, a1, b0, b1, kh_, kw_, include_pad)


@njit(**_OPTS)
def avg_pool_grad(g, out, kh_, kw_, sh, sw, ph, pw, include_pad):
    """out (input shape) = each window's gradient spread evenly over the window."""
    n_, c_, h_, w_ = out.shape
    ho, wo = g.shape[2], g.shape[3]
    gf = _flat(g)
    of = _flat(out)
    of[:] = 0
    for p in range(n_ * c_):
        xb = p * h_ * w_
        for oh in range(ho):
            _, a0, a1 = _window(oh, sh, ph, kh_, h_)
            for ow in range(wo):
                _, b0, b1 = _window(ow, sw, pw, kw_, w_)
                share = gf[uint64((p * ho + oh) * wo + ow)] / _count(a0, a1, b0, b1, kh_, kw_, include_pad)
                for ih in range(a0, a1):
                    row = uint64(xb + ih * w_)
                    for iw in range(b0, b1):
                        of[row + uint64(iw)] += share


# -- softmax rows and cross-entropy with integer labels ---------------------------------------
@njit(**_OPTS)
def softmax3(x, out, take_log):
    """out = softmax (or log_softmax) of x (P, N, Q) along N; sums accumulate in float64."""
    p_, n_, q_ = x.shape
    for p in range(p_):
        for q in range(q_):
            m = -np.inf
            for i in range(n_):
                v = x[p, i, q]
                m = v if (v > m or v != v) else m
            s = 0.0
            if take_log:
                for i in range(n_):
                    s += math.exp(x[p, i, q] - m)
                ls = math.log(s)
                for i in range(n_):
                    out[p, i, q] = x[p, i, q] - m - ls
            else:
                for i in range(n_):  # each exp once: kept in out, then scaled (half the exps)
                    e = math.exp(x[p, i, q] - m)
                    out[p, i, q] = e
                    s += e
                r = 1.0 / s
                for i in range(n_):
                    out[p, i, q] = out[p, i, q] * r


@njit(**_OPTS)
def ce_labels(x, labels, out):
    """out[p, q] = logsumexp(x[p, :, q]) - x[p, label, q]; returns the count of labels out of range
    (the caller then raises the reference's error). Sums accumulate in float64."""
    p_, c_, q_ = x.shape
    bad = 0
    for p in range(p_):
        for q in range(q_):
            lab = labels[p, q]
            if lab < 0 or lab >= c_:
                bad += 1
                out[p, q] = 0
                continue
            m = -np.inf
            for i in range(c_):
                v = x[p, i, q]
                m = v if (v > m or v != v) else m
            if not math.isfinite(m):
                m = x[p, 0, q] * 0  # as the reference: an infinite max is not subtracted
            s = 0.0
            for i in range(c_):
                s += math.exp(np.float64(x[p, i, q] - m))
            out[p, q] = m + math.log(s) - x[p, lab, q]
    return bad


@njit(**_OPTS)
def ce_labels_grad(x, labels, g, out):
    """out[p, :, q] = (softmax(x[p, :, q]) - onehot(labels[p, q])) * g[p, q]: each row's exps once,
    in x's dtype; returns the count of labels out of range (the caller then raises the
    reference's error). Sums accumulate in float64."""
    p_, c_, q_ = x.shape
    bad = 0
    for p in range(p_):
        for q in range(q_):
            lab = labels[p, q]
            if lab < 0 or lab >= c_:
                bad += 1
                for i in range(c_):
                    out[p, i, q] = 0
                continue
            m = x[p, 0, q]
            for i in range(1, c_):
                v = x[p, i, q]
                m = v if (v > m or v != v) else m
            s = 0.0
            for i in range(c_):
                e = math.exp(x[p, i, q] - m)
                out[p, i, q] = e
                s += e
            r = g[p, q] / s
            for i in range(c_):
                out[p, i, q] = out[p, i, q] * r
            out[p, lab, q] = out[p, lab, q] - g[p, q]
    return bad


@njit(**_OPTS)
def one_hot(labels, out):
    """out[p, i, q] = (labels[p, q] == i); returns the count of labels out of range (the caller
    then raises the reference's error)."""
    p_, d_, q_ = out.shape
    bad = 0
    for p in range(p_):
        for i in range(d_):
            for q in range(q_):
                out[p, i, q] = 0
        for q in range(q_):
            lab = labels[p, q]
            if lab < 0 or lab >= d_:
                bad += 1
            else:
                out[p, lab, q] = 1
    return bad
