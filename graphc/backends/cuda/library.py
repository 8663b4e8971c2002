"""The CUDA backend's fixed kernels (imported when a CUDA step is first compiled).

Every kernel strides over its work (grid-stride loops), so the launch shapes of
graphc.backends.cuda.device serve every size: a few threads under the simulator, full blocks
on a GPU. Row kernels (softmax, cross-entropy, argmax) give each row a block and reduce it in
shared memory as a tree (no warp shuffles). The matrix product is a tiled shared-memory GEMM
over a batch of operands addressed by per-batch offsets and row/column strides, so one kernel
serves matmul (broadcast batches, transposed views) and the convolutions' GEMMs.
"""

import math

import numpy as np

from graphc.backends.cuda import device

cuda = device.cuda()
_L = device.launch()
RT = _L.reduce_threads  # threads per block of the row kernels (a power of two)
TILE = _L.tile

# the transfers a lowering makes while it is bound (index maps, offsets): counted as constants
setup_transfers = None


def upload(host: np.ndarray):
    """A constant array copied to the device once, at binding."""
    host = np.ascontiguousarray(host)
    if setup_transfers is not None:
        setup_transfers.add("h2d", "constant", host.nbytes)
    return device.to_device(host)


def flat(a):
    return a.reshape(a.size)


def grid(n):
    return device.blocks(n, _L.threads, _L.max_blocks), _L.threads


def _rows(n):
    return device.blocks(n, 1, _L.max_blocks), RT


# -- fill, copy, scatter ----------------------------------------------------------------------
@cuda.jit
def _fill(out, value):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


def fill(out, value) -> None:
    if out.size:
        o = flat(out)
        _fill[grid(o.size)](o, np.asarray(value, out.dtype)[()])


@cuda.jit
def _scatter(out, x, out_pos, src_pos):
    for j in range(cuda.grid(1), out_pos.shape[0], cuda.gridsize(1)):
        out[out_pos[j]] = x[src_pos[j]]


def scatter(out, x, out_pos, src_pos) -> None:
    """out.flat[out_pos] = x.flat[src_pos]."""
    if out_pos.size:
        _scatter[grid(out_pos.size)](flat(out), flat(x), out_pos, src_pos)


@cuda.jit
def _gather(out, x, src_pos):
    for j in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[j] = x[src_pos[j]]


def gather(out, x, src_pos) -> None:
    """out.flat = x.flat[src_pos]."""
    if out.size:
        _gather[grid(out.size)](flat(out), flat(x), src_pos)


@cuda.jit
def _copy(out, x):
    for j in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[j] = x[j]


def copy(out, x) -> None:
    if out.size:
        _copy[grid(out.size)](flat(out), flat(x))


# -- the tiled GEMM ---------------------------------------------------------------------------
_GEMMS: dict = {}


def _make_gemm(acc):
    T = TILE

    @cuda.jit
    def gemm(a, ao, ar, ac, b, bo, br, bc, c, co, cr, cc, m, n, k, nb, accumulate):
        """c[co[q] + i*cr + j*cc] (+)= sum_t a[ao[q] + i*ar + t*ac] * b[bo[q] + t*br + j*bc], q < nb."""
        sa = cuda.shared.array((T, T), acc)
        sb = cuda.shared.array((T, T), acc)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tm = (m + T - 1) // T
        tn = (n + T - 1) // T
        for tile in range(cuda.blockIdx.x, nb * tm * tn, cuda.gridDim.x):
            q = tile // (tm * tn)
            r = tile % (tm * tn)
            i = (r // tn) * T + ty
            j = (r % tn) * T + tx
            s = acc(0)
            for t0 in range(0, k, T):
                ta = t0 + tx
                sa[ty, tx] = a[ao[q] + i * ar + ta * ac] if i < m and ta < k else 0
                tb = t0 + ty
                sb[ty, tx] = b[bo[q] + tb * br + j * bc] if tb < k and j < n else 0
                cuda.syncthreads()
                for u in range(T):
                    s += sa[ty, u] * sb[u, tx]
                cuda.syncthreads()
            if i < m and j < n:
                at = co[q] + i * cr + j * cc
                c[at] = s + c[at] if accumulate else s

    return gemm


class Gemm:
    """A batch of products C_q = A_q @ B_q (m x k by k x n), operands addressed by per-batch
    offsets (uploaded once) and (row, column) strides: bound once per shape."""

    def __init__(self, dtype, m, n, k, a_off, a_strides, b_off, b_strides, c_off, c_strides):
        acc = np.float64 if np.dtype(dtype) == np.float64 else np.float32
        if acc not in _GEMMS:
            _GEMMS[acc] = _make_gemm(acc)
        self.fn = _GEMMS[acc]
        self.m, self.n, self.k, self.nb = int(m), int(n), int(k), len(a_off)
        self.offs = [upload(np.asarray(o, np.int64)) for o in (a_off, b_off, c_off)]
        self.strides = (a_strides, b_strides, c_strides)
        tiles = self.nb * -(-self.m // TILE) * -(-self.n // TILE)
        self.grid = device.blocks(tiles, 1, _L.max_blocks)

    def __call__(self, c, a, b, accumulate=False):
        if self.nb == 0 or self.m == 0 or self.n == 0:
            return
        if self.k == 0 and not accumulate:
            fill(c, 0)
            return
        (ar, ac), (br, bc), (cr, cc) = self.strides
        ao, bo, co = self.offs
        self.fn[self.grid, (TILE, TILE)](flat(a), ao, ar, ac, flat(b), bo, br, bc, flat(c), co, cr, cc,
                                         self.m, self.n, self.k, self.nb, accumulate)  # fmt: skip


# -- rows: softmax, cross-entropy, argmax (x seen as (P, N, Q); a row is (p, :, q)) -------------
@cuda.jit(device=True)
def _tree(part, t, is_max):
    w = RT // 2
    while w > 0:
        cuda.syncthreads()
        if t < w:
            a, b = part[t], part[t + w]
            if is_max:
                part[t] = a if (a >= b or a != a) else b
            else:
                part[t] = a + b
        w //= 2
    cuda.syncthreads()


@cuda.jit(device=True)
def _row_lse(x, r, part, t):
    """Row r of x (P, N, Q) as (p, q), and the log-sum-exp of x[p, :, q], as the reference (an
    infinite max is not subtracted); every thread gets (p, q, lse)."""
    n_, q_ = x.shape[1], x.shape[2]
    p = r // q_
    q = r % q_
    m = -math.inf
    for i in range(t, n_, RT):
        v = x[p, i, q]
        m = v if (v > m or v != v) else m
    part[t] = m
    _tree(part, t, True)
    m = part[0]
    cuda.syncthreads()
    if not math.isfinite(m):
        m = 0.0  # as the reference: an infinite (or NaN) max is not subtracted
    s = 0.0
    for i in range(t, n_, RT):
        s += math.exp(x[p, i, q] - m)
    part[t] = s
    _tree(part, t, False)
    lse = m + math.log(part[0])
    cuda.syncthreads()
    return p, q, lse


@cuda.jit
def _softmax(x, out, take_log):
    part = cuda.shared.array(RT, np.float64)
    t = cuda.threadIdx.x
    p_, n_, q_ = x.shape
    for r in range(cuda.blockIdx.x, p_ * q_, cuda.gridDim.x):
        p, q, lse = _row_lse(x, r, part, t)
        for i in range(t, n_, RT):
            v = x[p, i, q] - lse
            out[p, i, q] = v if take_log else math.exp(v)


def softmax(out, x, three, take_log) -> None:
    p, _, q = three
    if out.size:
        _softmax[_rows(p * q)](x.reshape(three), out.reshape(three), take_log)


@cuda.jit(device=True)
def _row_label(labels, r, n_, q_, bad, t):
    """Row r as (p, q) and its label; the label -1, and bad[0] set, where it lies outside [0, n_)."""
    p = r // q_
    q = r % q_
    lab = labels[p, q]
    if lab < 0 or lab >= n_:
        if t == 0:
            bad[0] = 1
        lab = -1
    return p, q, lab


@cuda.jit
def _ce_labels(x, labels, out, bad):
    part = cuda.shared.array(RT, np.float64)
    t = cuda.threadIdx.x
    p_, n_, q_ = x.shape
    for r in range(cuda.blockIdx.x, p_ * q_, cuda.gridDim.x):
        p, q, lab = _row_label(labels, r, n_, q_, bad, t)
        if lab < 0:
            if t == 0:
                out[p, q] = 0
            continue
        lse = _row_lse(x, r, part, t)[2]
        if t == 0:
            out[p, q] = lse - x[p, lab, q]


def ce_labels(out, x, labels, three, bad) -> None:
    p, _, q = three
    if out.size:
        _ce_labels[_rows(p * q)](x.reshape(three), labels.reshape(p, q), out.reshape(p, q), bad)


@cuda.jit
def _ce_labels_grad(x, labels, g, out, bad):
    part = cuda.shared.array(RT, np.float64)
    t = cuda.threadIdx.x
    p_, n_, q_ = x.shape
    for r in range(cuda.blockIdx.x, p_ * q_, cuda.gridDim.x):
        p, q, lab = _row_label(labels, r, n_, q_, bad, t)
        if lab < 0:
            for i in range(t, n_, RT):
                out[p, i, q] = 0
            continue
        lse = _row_lse(x, r, part, t)[2]
        w = g[p, q]
        for i in range(t, n_, RT):
            out[p, i, q] = (math.exp(x[p, i, q] - lse) - (1.0 if i == lab else 0.0)) * w


def ce_labels_grad(out, x, labels, g, three, bad) -> None:
    p, _, q = three
    if out.size:
        _ce_labels_grad[_rows(p * q)](x.reshape(three), labels.reshape(p, q), g.reshape(p, q), out.reshape(three), bad)


@cuda.jit
def _ce_probs(x, tg, out):
    part = cuda.shared.array(RT, np.float64)
    t = cuda.threadIdx.x
    p_, n_, q_ = x.shape
    for r in range(cuda.blockIdx.x, p_ * q_, cuda.gridDim.x):
        p, q, lse = _row_lse(x, r, part, t)
        s = 0.0
        for i in range(t, n_, RT):
            w = tg[p, i, q]
            if w != 0:
                s += w * (lse - x[p, i, q])
        part[t] = s
        _tree(part, t, False)
        if t == 0:
            out[p, q] = part[0]
        cuda.syncthreads()


def ce_probs(out, x, tg, three) -> None:
    p, _, q = three
    if out.size:
        _ce_probs[_rows(p * q)](x.reshape(three), tg.reshape(three), out.reshape(p, q))


@cuda.jit
def _argmax(x, out):
    val = cuda.shared.array(RT, np.float64)
    at = cuda.shared.array(RT, np.int64)
    t = cuda.threadIdx.x
    p_, n_, q_ = x.shape
    for r in range(cuda.blockIdx.x, p_ * q_, cuda.gridDim.x):
        p = r // q_
        q = r % q_
        best = -math.inf
        k = np.int64(n_)
        for i in range(t, n_, RT):  # the first maximum; NaN wins, as in np.argmax
            v = x[p, i, q]
            if k == n_ or v > best or (v != v and best == best):
                best, k = v, i
        val[t] = best
        at[t] = k
        w = RT // 2
        while w > 0:
            cuda.syncthreads()
            if t < w:
                a, b = val[t], val[t + w]
                ka, kb = at[t], at[t + w]
                take = kb < n_ and (
                    ka == n_ or b > a or (b != b and a == a) or ((b == a or (a != a and b != b)) and kb < ka)
                )
                if take:
                    val[t] = b
                    at[t] = kb
            w //= 2
        cuda.syncthreads()
        if t == 0:
            out[p, q] = at[0]
        cuda.syncthreads()


def argmax(out, x, three) -> None:
    p, _, q = three
    if out.size:
        _argmax[_rows(p * q)](x.reshape(three), out.reshape(p, q))


# -- indices: one_hot, take and its scatter-add -------------------------------------------------
@cuda.jit(device=True)
def _pjq(e, k_, q_):
    """The flat index e of a (P, K, Q) array as (p, j, q)."""
    return e // (k_ * q_), (e // q_) % k_, e % q_


@cuda.jit
def _one_hot(labels, out, bad):
    p_, d_, q_ = out.shape
    for e in range(cuda.grid(1), p_ * d_ * q_, cuda.gridsize(1)):
        p, i, q = _pjq(e, d_, q_)
        lab = labels[p, q]
        if lab < 0 or lab >= d_:
            bad[0] = 1
        out[p, i, q] = 1 if lab == i else 0


def one_hot(out, labels, three, bad) -> None:
    p, d, q = three
    if out.size:
        _one_hot[grid(out.size)](labels.reshape(p, q), out.reshape(three), bad)


@cuda.jit(device=True)
def _checked(i, d_, lo, bad):
    """Index i of an axis of d_ wrapped to [0, d_) when negative (lo < 0); -1 and bad[0] set when
    it lies outside [lo, d_)."""
    if i < lo or i >= d_:
        bad[0] = 1
        return -1
    return i + d_ if i < 0 else i


@cuda.jit
def _take(x, idx, out, bad, lo):
    p_, d_, q_ = x.shape
    k_ = idx.shape[0]
    for e in range(cuda.grid(1), p_ * k_ * q_, cuda.gridsize(1)):
        p, j, q = _pjq(e, k_, q_)
        i = _checked(idx[j], d_, lo, bad)
        out[p, j, q] = x[p, i, q] if i >= 0 else 0


@cuda.jit
def _take_grad(g, idx, out, bad, lo):
    d_ = out.shape[1]
    p_, k_, q_ = g.shape
    for e in range(cuda.grid(1), p_ * k_ * q_, cuda.gridsize(1)):
        p, j, q = _pjq(e, k_, q_)
        i = _checked(idx[j], d_, lo, bad)
        if i >= 0:
            cuda.atomic.add(out, (p, i, q), g[p, j, q])  # repeated indices accumulate


def take(out, x, idx, three, k, bad, lo) -> None:
    p, d, q = three
    if out.size:
        _take[grid(out.size)](x.reshape(three), flat(idx), out.reshape(p, k, q), bad, lo)


def take_grad(out, g, idx, three, k, bad, lo) -> None:
    p, d, q = three
    fill(out, 0)
    if g.size:
        _take_grad[grid(g.size)](g.reshape(p, k, q), flat(idx), out.reshape(three), bad, lo)


@cuda.jit
def _sequence_mask(lengths, out, bad):
    p_, t_ = out.shape
    for e in range(cuda.grid(1), p_ * t_, cuda.gridsize(1)):
        p = e // t_
        t = e % t_
        n = lengths[p]
        if n < 0 or n > t_:
            bad[0] = 1
        out[p, t] = t < n


def sequence_mask(out, lengths, bad) -> None:
    if out.size:
        p = lengths.size
        _sequence_mask[grid(out.size)](flat(lengths), out.reshape(p, out.size // p), bad)
