"""Numba lowerings of conv2d (and its two gradient ops), pooling, label cross-entropy and one_hot.

Builders as in lowerings.py: `f(node, in_shapes, out_shape) -> run(out, *inputs)`, called once
per shape specialisation; the executor hands `run` planned output buffers, and conv+bias+ReLU
stays one kernel group (the bias/activation epilogue loop runs on the conv's buffer).

Convolution is im2col + GEMM. The columns are laid out (N, C*kh*kw, Ho, Wo), so for each image
`W (O, C*kh*kw) @ cols[n]` is the NCHW output itself (no transpose after the GEMM), and every
column row is a shifted copy of an input row (a vectorised copy for stride 1):
  conv2d:             out[n]  = W @ cols[n]                 (batched np.matmul into `out`)
  conv2d_grad_weight: gw      = sum_n gy[n] @ cols[n].T      (batched matmul + sum over n)
  conv2d_grad_input:  gx      = col2im(W.T @ gy[n])          (batched matmul + scatter kernel)
Groups are one more batch axis of the matmuls. The products are one per image (np.matmul loops
over the batch; one GEMM over the whole batch measured 2-4x slower on LeNet's shapes), so their
BLAS thread count follows one image's product, not the batch's. When those are small (all of
LeNet's), the batch itself is split over the BLAS tuner's threads instead (batch_split: each
thread makes its images' columns and products, as one native series for graphc's native team
where every piece is native code: conv_parts.Parts), as are the pooling kernels'. Measured on the
LeNet-5 shapes (batch 64,
float32, one BLAS thread, this 2-core box under load ~4.5, so every figure is inflated; ms,
median of 30-50, torch 2.13 CPU with one thread in the same process for scale):

    shape (N,C,H -> O, 5x5)   direct loops   im2col+GEMM (im2col + matmul)   torch
    conv   64,1,28 -> 6           10.9         0.55 (0.20 + 0.35)            0.6-1.0
    conv   64,6,12 -> 16          41.8         0.80 (0.35 + 0.44)            0.4-0.5
    wgrad  64,1,28 -> 6           13.2         0.76 (0.20 + 0.56)            2.4
    wgrad  64,6,12 -> 16          29.0         0.73 (0.35 + 0.38)            0.8
    ginput 64,6,12 -> 16          25.3         0.6  (matmul + col2im 0.33)   0.9

Direct loops (prange over batch x channel, inner loop along W) lose on every shape: the
windows are 5 wide and the rows 8-24 long, so they never vectorise well, and their prange
version was slower still under load. So every shape takes im2col + GEMM. The im2col and
col2im kernels index flat arrays with uint64 indices: with signed ones Numba checks every
index for negative wrap-around and the copy loop does not vectorise (1.2 ms -> 0.2 ms).

The column buffers are scratch: one growing per-thread arena shared by every conv kernel (the
columns are dead when the kernel returns), so a LeNet step allocates nothing per call. The
forward conv2d's columns are the exception: it keeps them (with a copy of x) in a small
per-thread memo, and the weight gradient, which reads the same x later in the step, takes them
when its x is bytewise equal to the copy (LeNet conv2: a 0.01 ms compare instead of a 0.3 ms
im2col; about 6 MB kept for LeNet's two convs, 64 MiB at most: larger columns are not kept).

The weight gradient's product depends on the shape: gy[n] @ cols[n].T when Ho*Wo >= C*kh*kw,
else cols[n] @ gy[n].T with gy[n].T copied first (OpenBLAS's small-matrix path is slow for the
first form when the contraction is the short side: LeNet conv2, 0.51 ms against 0.22).
"""

import threading

import numpy as np

from graphc.backends.numba import batch_split, blas, chain
from graphc.backends.numba.conv_parts import Parts, gemms, where
from graphc.ops.registry import lowering

_ARENA = threading.local()


def _scratch(shape, dtype, slot: int = 0) -> np.ndarray:
    """A scratch array of `shape` from this thread's arena slot `slot` (0 or 1: a kernel needing
    two scratch arrays takes one of each), valid until the next _scratch call for that slot."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    bufs = getattr(_ARENA, "bufs", None)
    if bufs is None:
        bufs = _ARENA.bufs = [None, None]
    buf = bufs[slot]
    if buf is None or buf.size < n:
        buf = bufs[slot] = np.empty(max(n, 64), np.uint8)
    return buf[:n].view(dt).reshape(shape)


class _Kernels:
    """conv_kernels' functions by name, as cache.library_kernel handles: each call runs the kernel
    bound to its arguments' types (natively loaded from its entry, or compiled or loaded by
    Numba on first use), so a corrupt cache entry is rebuilt, not fatal, and compile_stats()
    counts these kernels too."""

    def __getattr__(self, name):
        from graphc.backends.numba import cache

        kern = cache.library_kernel("graphc.backends.numba.conv_kernels", name)

        def call(*args):
            return kern.bind(args)(*args)

        def task(*args):  # the call as a native.NativeTask, where the kernel is native code
            make = getattr(kern.bind(args), "task", None)
            return None if make is None else make(args)

        call.task = task
        setattr(self, name, call)
        return call


KERNELS = _Kernels()


def _k():
    return KERNELS


def _geometry(a):
    (sh, sw), (dh, dw), pad = a["stride"], a["dilation"], a["padding"]
    return sh, sw, pad[0], pad[2], dh, dw


def _identity_cols(kh, kw, geo, pad):
    """A 1x1 kernel, stride 1, no padding: the columns are the input itself."""
    return kh == kw == 1 and geo[:2] == (1, 1) and not any(pad)


class _Memo:
    """The last columns made by a forward conv2d, per input shape, dtype and geometry (this
    thread's), with a copy of the input they were made from. conv2d_grad_weight reads the same x
    as its step's forward conv2d, so when its x is bytewise equal to the copy (an exact check,
    about a tenth of the im2col it saves) it takes those columns instead of making them again."""

    LIMIT = 8  # geometries kept; the oldest goes first
    BUDGET = 64 << 20  # bytes kept in all (inputs and columns); larger columns are not kept

    def __init__(self):
        self.entries: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def put(self, key, x, shape, dtype) -> np.ndarray | None:
        """The columns array to fill for input x (its copy taken now), or None when they would
        not fit the budget (the caller makes them in scratch memory)."""
        e = self.entries.pop(key, None)
        need = x.nbytes + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if need > self.BUDGET:
            return None
        if e is None:
            held = sum(a.nbytes + b.nbytes for a, b in self.entries.values())
            while self.entries and (len(self.entries) >= self.LIMIT or held + need > self.BUDGET):
                a, b = self.entries.pop(next(iter(self.entries)))
                held -= a.nbytes + b.nbytes
            e = (np.empty_like(x), np.empty(shape, dtype))
        self.entries[key] = e
        np.copyto(e[0], x)
        return e[1]

    def get(self, key, x) -> np.ndarray | None:
        """The columns made from an input equal to x, or None."""
        e = self.entries.get(key)
        if e is None:
            return None
        bits = np.dtype(f"u{x.dtype.itemsize}")  # bytes, so that NaNs compare equal too
        return e[1] if np.array_equal(e[0].view(bits), x.view(bits)) else None


def _memo() -> _Memo:
    m = getattr(_ARENA, "memo", None)
    if m is None:
        m = _ARENA.memo = _Memo()
    return m


class _Fill:
    """Images lo..hi of x's columns made into cols4: called, or as a native task (fill.task)."""

    __slots__ = ("cols4", "args")

    def __init__(self, cols4, kh, kw, geo):
        self.cols4, self.args = cols4, (kh, kw, *geo)

    def __call__(self, x, lo, hi):
        _k().im2col(x[lo:hi], self.cols4[lo:hi], *self.args)

    def task(self, x, lo, hi):
        return _k().im2col.task(x[lo:hi], self.cols4[lo:hi], *self.args)


def _fill_pieces(fill: _Fill | None, x, lo, hi) -> list:
    """A part's columns piece for Parts.task: none where the columns are made already."""
    return [] if fill is None else [("fill", where(x, fill.cols4), lambda: fill.task(x, lo, hi))]


def _columns_of(node, x_shape, dims, geo, shared: str):
    """x -> (cols, fill): x's im2col columns as (n, groups, C/groups*kh*kw, Ho*Wo) and a _Fill,
    which makes images lo..hi of them (None: they are made already). shared
    "put": the columns go into the memo (the forward conv2d); "get": they are taken from the memo
    when it holds x's (the weight gradient), else made in a reused scratch buffer. For a 1x1
    kernel at stride 1 without padding the columns are x itself, reshaped."""
    n, c, g, k, kh, kw, ho, wo = dims
    if _identity_cols(kh, kw, geo, node.attrs["padding"]):
        return lambda x: (x.reshape(n, g, k, ho * wo), None)
    dt = node.dtype
    shape = (n, c * kh * kw, ho, wo)
    key = (*x_shape, np.dtype(dt).str, kh, kw, *geo)

    def columns(x):
        if shared == "put":
            cols4 = _memo().put(key, x, shape, dt)
        else:
            cols4 = _memo().get(key, x)
            if cols4 is not None:
                return cols4.reshape(n, g, k, ho * wo), None
        if cols4 is None:
            cols4 = _scratch(shape, dt)
        return cols4.reshape(n, g, k, ho * wo), _Fill(cols4, kh, kw, geo)

    return columns


def _threads_for(flops: float, n: int):
    """(per-image product is small, the call's work for the tuner): a small per-image product runs
    on one BLAS thread and the batch is split over the tuner's threads (batch_split); a large one
    takes the BLAS threads itself, whole."""
    small = flops < blas.SMALL_FLOPS
    return small, flops * n if small else flops


def _split(small: bool, n: int, elements: int, part, task) -> None:
    if small:
        blas.use(1)
        batch_split.over_batch(n, elements, part, task)
    else:
        blas.use(blas.large)
        part(0, n)


@lowering("conv2d", "numba")
def _conv(node, in_shapes, out_shape):
    (n, c, _, _), (o, cg, kh, kw) = in_shapes
    ho, wo = out_shape[2:]
    g = node.attrs["groups"]
    geo = _geometry(node.attrs)
    k, og, p = cg * kh * kw, o // g, ho * wo
    columns = _columns_of(node, in_shapes[0], (n, c, g, k, kh, kw, ho, wo), geo, "put")
    small, work = _threads_for(2.0 * o * k * p, n)  # flops of one image's product
    parts = Parts()

    def run(out, x, w):
        x = np.ascontiguousarray(x)
        cols, fill = columns(x)
        wg, out4 = w.reshape(g, og, k), out.reshape(n, g, og, p)

        def part(lo, hi):
            if fill is not None:
                fill(x, lo, hi)
            np.matmul(wg, cols[lo:hi], out=out4[lo:hi])

        def task(lo, hi):
            pieces = _fill_pieces(fill, x, lo, hi)

            def products():
                return gemms([(out4[i, j], wg[j], cols[i, j]) for i in range(lo, hi) for j in range(g)])

            pieces.append(("gemms", where(out, w, cols), products))
            return parts.task(lo, hi, pieces)

        _split(small, n, n * c * kh * kw * p, part, task)  # as many elements as the columns

    run.flops = work
    return run


@lowering("conv2d_grad_weight", "numba")
def _conv_grad_weight(node, in_shapes, out_shape):
    (n, c, _, _), (_, _, ho, wo) = in_shapes
    o, cg, kh, kw = out_shape
    g = node.attrs["groups"]
    geo = _geometry(node.attrs)
    k, og, p, dt = cg * kh * kw, o // g, ho * wo, node.dtype
    columns = _columns_of(node, in_shapes[0], (n, c, g, k, kh, kw, ho, wo), geo, "get")
    small, work = _threads_for(2.0 * o * k * p, n)
    # per image: gy[n] @ cols[n].T, or cols[n] @ gy[n].T (gy[n].T copied first) when the
    # contraction is the short side; summed over n afterwards
    short = p < k
    per_image = np.empty((n, g, k, og) if short else (n, g, og, k), dt)
    summed = np.empty((g, k, og), dt) if short else None
    parts = Parts()

    def run(out, x, gy):
        x = np.ascontiguousarray(x)
        cols, fill = columns(x)
        gy4 = gy.reshape(n, g, og, p)
        gyt = _scratch((n, g, p, og), dt, slot=1) if short else None

        def part(lo, hi):
            if fill is not None:
                fill(x, lo, hi)
            if short:
                np.copyto(gyt[lo:hi], gy4[lo:hi].transpose(0, 1, 3, 2))
                np.matmul(cols[lo:hi], gyt[lo:hi], out=per_image[lo:hi])
            else:
                np.matmul(gy4[lo:hi], cols[lo:hi].transpose(0, 1, 3, 2), out=per_image[lo:hi])

        def products(lo, hi):  # natively, cblas reads gy's transpose in place (as fast as the copy here)
            if short:
                return [(per_image[i, j], cols[i, j], gy4[i, j].T) for i in range(lo, hi) for j in range(g)]
            return [(per_image[i, j], gy4[i, j], cols[i, j].T) for i in range(lo, hi) for j in range(g)]

        def task(lo, hi):
            pieces = _fill_pieces(fill, x, lo, hi)
            pieces.append(("gemms", where(gy, cols), lambda: gemms(products(lo, hi))))
            return parts.task(lo, hi, pieces)

        _split(small, n, n * c * kh * kw * p, part, task)  # as many elements as the columns
        if short:  # summed, then transposed: summing into the transposed view took twice as long
            np.sum(per_image, axis=0, out=summed)
            np.copyto(out.reshape(g, og, k), summed.transpose(0, 2, 1))
        else:
            np.sum(per_image, axis=0, out=out.reshape(g, og, k))

    run.flops = work
    return run


@lowering("conv2d_grad_input", "numba")
def _conv_grad_input(node, in_shapes, out_shape):
    (n, o, ho, wo), (_, cg, kh, kw) = in_shapes
    c = out_shape[1]
    g = node.attrs["groups"]
    geo = _geometry(node.attrs)
    k, og, p, dt = cg * kh * kw, o // g, ho * wo, node.dtype
    col2im = _k().col2im
    ident = _identity_cols(kh, kw, geo, node.attrs["padding"])
    small, work = _threads_for(2.0 * o * k * p, n)
    parts = Parts()

    def run(out, gy, w):
        wt = w.reshape(g, og, k).transpose(0, 2, 1)  # BLAS reads the transpose in place
        gyg = gy.reshape(n, g, og, p)
        cols4 = out.reshape(n, c, *out.shape[2:]) if ident else _scratch((n, c * kh * kw, ho, wo), dt)
        cols = cols4.reshape(n, g, k, p)

        def part(lo, hi):
            np.matmul(wt, gyg[lo:hi], out=cols[lo:hi])
            if not ident:
                col2im(cols4[lo:hi], out[lo:hi], kh, kw, *geo)  # out: a planned, contiguous buffer

        def task(lo, hi):
            def products():
                return gemms([(cols[i, j], wt[j], gyg[i, j]) for i in range(lo, hi) for j in range(g)])

            def scatter():
                return col2im.task(cols4[lo:hi], out[lo:hi], kh, kw, *geo)

            pieces = [("gemms", where(gy, w, cols4), products)]
            if not ident:
                pieces.append(("col2im", where(cols4, out), scatter))
            return parts.task(lo, hi, pieces)

        _split(small, n, n * c * kh * kw * p, part, task)  # as many elements as the columns

    run.flops = work
    return run


# -- pooling (kernels index flat C-contiguous arrays; `out` is a planned, contiguous buffer) --------
_c = np.ascontiguousarray  # a no-op for the usual contiguous inputs


def _pool_geometry(a):
    (kh, kw), (sh, sw), pad = a["kernel"], a["stride"], a["padding"]
    return kh, kw, sh, sw, pad[0], pad[2]


def _batched(kern, geo):
    """run(out, *inputs) = kern(*inputs, out, *geo), the batch split over the tuner's threads."""

    def run(out, *ins):
        ins = [_c(a) for a in ins]
        elements = max(out.size, ins[0].size)

        def args(lo, hi):
            return (*[a[lo:hi] for a in ins], out[lo:hi], *geo)

        def part(lo, hi):
            kern(*args(lo, hi))

        batch_split.over_batch(out.shape[0], elements, part, lambda lo, hi: kern.task(*args(lo, hi)))

    return run


@lowering("max_pool2d", "numba")
def _max_pool(node, in_shapes, out_shape):
    return _batched(_k().max_pool, _pool_geometry(node.attrs))


@lowering("max_pool2d_grad", "numba")
def _max_pool_grad(node, in_shapes, out_shape):
    return _batched(_k().max_pool_grad, _pool_geometry(node.attrs))


@lowering("max_pool2d_gather", "numba")
def _max_pool_gather(node, in_shapes, out_shape):
    return _batched(_k().max_pool_gather, _pool_geometry(node.attrs))


@lowering("avg_pool2d", "numba")
def _avg_pool(node, in_shapes, out_shape):
    return _batched(_k().avg_pool, (*_pool_geometry(node.attrs), bool(node.attrs["count_include_pad"])))


@lowering("avg_pool2d_grad", "numba")
def _avg_pool_grad(node, in_shapes, out_shape):
    return _batched(_k().avg_pool_grad, (*_pool_geometry(node.attrs), bool(node.attrs["count_include_pad"])))


# -- cross-entropy with integer labels ------------------------------------------------------------
def _rows_of(logits_shape, ax):
    """The logits as (pre, classes, post) and the labels as (pre, post): their rows along `ax`."""
    pre = int(np.prod(logits_shape[:ax], dtype=np.int64))
    post = int(np.prod(logits_shape[ax + 1 :], dtype=np.int64))
    return (pre, logits_shape[ax], post), (pre, post)


@lowering("cross_entropy_labels", "numba")
def _ce_labels(node, in_shapes, out_shape):
    three, two = _rows_of(in_shapes[0], node.attrs["axis"])
    kern = _k().ce_labels

    def run(out, x, labels):
        if kern(x.reshape(three), labels.reshape(two), out.reshape(two)):
            node.opdef.ref(node, [x, labels], None)  # raises the reference's error, naming the label

    def task(out, x, labels):  # for a chain: it stops here on a label out of range
        made = kern.task(x.reshape(three), labels.reshape(two), out.reshape(two))
        return chain.checked(made, lambda: node.opdef.ref(node, [x, labels], None))

    run.task = task
    return run


@lowering("cross_entropy_labels_grad", "numba")
def _ce_labels_grad(node, in_shapes, out_shape):
    three, two = _rows_of(in_shapes[0], node.attrs["axis"])
    kern = _k().ce_labels_grad

    def run(out, x, labels, g):
        if kern(x.reshape(three), labels.reshape(two), g.reshape(two), out.reshape(three)):
            node.opdef.ref(node, [x, labels, g], None)  # raises the reference's error, naming the label

    def task(out, x, labels, g):
        made = kern.task(x.reshape(three), labels.reshape(two), g.reshape(two), out.reshape(three))
        return chain.checked(made, lambda: node.opdef.ref(node, [x, labels, g], None))

    run.task = task
    return run


@lowering("one_hot", "numba")
def _one_hot(node, in_shapes, out_shape):
    ax = node.attrs["axis"]
    shp = in_shapes[0]
    pre, post = int(np.prod(shp[:ax], dtype=np.int64)), int(np.prod(shp[ax:], dtype=np.int64))
    three, two = (pre, node.attrs["depth"], post), (pre, post)
    kern = _k().one_hot

    def run(out, labels):
        if kern(labels.reshape(two), out.reshape(three)):
            node.opdef.ref(node, [labels], None)  # raises the reference's error, naming the label

    return run
