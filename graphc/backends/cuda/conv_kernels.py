"""The CUDA backend's convolution and pooling kernels (NCHW), for lowerings_conv.py: im2col,
col2im (scatter-add with atomics), the sum over images of the weight gradient, and pooling (one
thread per output element, or per window for the gradients). Grid-stride loops, as library.py.
"""

import math

from graphc.backends.cuda.library import cuda, fill, flat, grid


@cuda.jit(device=True)
def _nchw(e, c_, ho, wo):
    """The flat index e of an (N, C, Ho, Wo) array as (n, c, oh, ow)."""
    return e // (wo * ho * c_), (e // (wo * ho)) % c_, (e // wo) % ho, e % wo


# -- convolution helpers: im2col, col2im (scatter-add), the sum over images ---------------------
@cuda.jit(device=True)
def _tap(r, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw):
    """Row r of the columns (channel, kernel row, kernel column) at output (oh, ow): the input's
    (c, ih, iw), which may lie in the padding."""
    c = r // (kh * kw)
    i = (r // kw) % kh
    j = r % kw
    return c, oh * sh - ph + i * dh, ow * sw - pw + j * dw


@cuda.jit(device=True)
def _to_cols(cols, x, n, r, oh, ow, c, ih, iw, inside):
    cols[n, r, oh, ow] = x[n, c, ih, iw] if inside else 0


@cuda.jit(device=True)
def _from_cols(cols, out, n, r, oh, ow, c, ih, iw, inside):
    if inside:
        cuda.atomic.add(out, (n, c, ih, iw), cols[n, r, oh, ow])


def _make_cols_kernel(move):
    """A kernel over the columns (N, C*kh*kw, Ho, Wo) of an image (N, C, H, W) that calls the
    device function `move` at each (column element, image element) pair; `inside`: the image
    element is not in the padding."""

    @cuda.jit
    def kernel(cols, image, kh, kw, sh, sw, ph, pw, dh, dw):
        h_, w_ = image.shape[2], image.shape[3]
        n_, r_, ho, wo = cols.shape
        for e in range(cuda.grid(1), n_ * r_ * ho * wo, cuda.gridsize(1)):
            n, r, oh, ow = _nchw(e, r_, ho, wo)
            c, ih, iw = _tap(r, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw)
            move(cols, image, n, r, oh, ow, c, ih, iw, ih >= 0 and ih < h_ and iw >= 0 and iw < w_)

    return kernel


_im2col = _make_cols_kernel(_to_cols)  # cols from x, zeros in the padding
_col2im = _make_cols_kernel(_from_cols)  # scatter-add of cols into the image


def im2col(cols, x, geo) -> None:
    if cols.size:
        _im2col[grid(cols.size)](cols, x, *geo)


def col2im(out, cols, geo) -> None:
    fill(out, 0)
    if cols.size:
        _col2im[grid(cols.size)](cols, out, *geo)


@cuda.jit
def _sum0(x, out):
    """out[j] = sum over i of x[i, j] (accumulated in float64)."""
    n_, m_ = x.shape
    for j in range(cuda.grid(1), m_, cuda.gridsize(1)):
        s = 0.0
        for i in range(n_):
            s += x[i, j]
        out[j] = s


def sum0(out, x, n) -> None:
    if out.size:
        _sum0[grid(out.size)](x.reshape(n, out.size), flat(out))


# -- pooling (NCHW; one thread per output element, or per window for the gradients) -----------
@cuda.jit(device=True)
def _window_argmax(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw):
    """The flat (ih * W + iw) index of the window's first maximum (NaN wins), -1 if all padding."""
    h_, w_ = x.shape[2], x.shape[3]
    best = 0.0
    at = -1
    for i in range(kh):
        ih = oh * sh - ph + i
        for j in range(kw):
            iw = ow * sw - pw + j
            if ih >= 0 and ih < h_ and iw >= 0 and iw < w_:
                v = x[n, c, ih, iw]
                if at < 0 or v > best or (v != v and best == best):
                    best = v
                    at = ih * w_ + iw
    return at


@cuda.jit
def _max_pool_grad(x, g, out, kh, kw, sh, sw, ph, pw):
    n_, c_, ho, wo = g.shape
    w_ = x.shape[3]
    for e in range(cuda.grid(1), n_ * c_ * ho * wo, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(e, c_, ho, wo)
        at = _window_argmax(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw)
        if at >= 0:
            cuda.atomic.add(out, (n, c, at // w_, at % w_), g[n, c, oh, ow])


@cuda.jit
def _max_pool_gather(x, h, out, empty, kh, kw, sh, sw, ph, pw):
    """out = h at each window's argmax of x (h is x for the max pool itself); `empty` where the
    window is all padding."""
    n_, c_, ho, wo = out.shape
    w_ = x.shape[3]
    for e in range(cuda.grid(1), n_ * c_ * ho * wo, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(e, c_, ho, wo)
        at = _window_argmax(x, n, c, oh, ow, kh, kw, sh, sw, ph, pw)
        out[n, c, oh, ow] = h[n, c, at // w_, at % w_] if at >= 0 else empty


@cuda.jit(device=True)
def _span(o, s, p, k, size):
    a0 = o * s - p
    a1 = a0 + k
    return max(a0, 0), min(a1, size)


@cuda.jit(device=True)
def _avg_window(oh, ow, kh, kw, sh, sw, ph, pw, h_, w_, include_pad):
    """Output (oh, ow)'s window clipped to the input, rows [a0, a1) by columns [b0, b1), and the
    count its mean divides by (the whole window with include_pad, else the part inside)."""
    a0, a1 = _span(oh, sh, ph, kh, h_)
    b0, b1 = _span(ow, sw, pw, kw, w_)
    return a0, a1, b0, b1, kh * kw if include_pad else (a1 - a0) * (b1 - b0)


@cuda.jit
def _avg_pool(x, out, kh, kw, sh, sw, ph, pw, include_pad):
    n_, c_, ho, wo = out.shape
    h_, w_ = x.shape[2], x.shape[3]
    for e in range(cuda.grid(1), n_ * c_ * ho * wo, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(e, c_, ho, wo)
        a0, a1, b0, b1, cnt = _avg_window(oh, ow, kh, kw, sh, sw, ph, pw, h_, w_, include_pad)
        s = x[n, c, 0, 0] * 0
        for i in range(a0, a1):
            for j in range(b0, b1):
                s += x[n, c, i, j]
        out[n, c, oh, ow] = s / cnt


@cuda.jit
def _avg_pool_grad(g, out, kh, kw, sh, sw, ph, pw, include_pad):
    n_, c_, ho, wo = g.shape
    h_, w_ = out.shape[2], out.shape[3]
    for e in range(cuda.grid(1), n_ * c_ * ho * wo, cuda.gridsize(1)):
        n, c, oh, ow = _nchw(e, c_, ho, wo)
        a0, a1, b0, b1, cnt = _avg_window(oh, ow, kh, kw, sh, sw, ph, pw, h_, w_, include_pad)
        share = g[n, c, oh, ow] / cnt
        for i in range(a0, a1):
            for j in range(b0, b1):
                cuda.atomic.add(out, (n, c, i, j), share)


def max_pool(out, x, geo) -> None:
    if out.size:
        _max_pool_gather[grid(out.size)](x, x, out, -math.inf, *geo)


def max_pool_grad(out, x, g, geo) -> None:
    fill(out, 0)
    if g.size:
        _max_pool_grad[grid(g.size)](x, g, out, *geo)


def max_pool_gather(out, x, h, geo) -> None:
    if out.size:
        _max_pool_gather[grid(out.size)](x, h, out, 0.0, *geo)


def avg_pool(out, x, geo, include_pad) -> None:
    if out.size:
        _avg_pool[grid(out.size)](x, out, *geo, include_pad)


def avg_pool_grad(out, g, geo, include_pad) -> None:
    fill(out, 0)
    if g.size:
        _avg_pool_grad[grid(g.size)](g, out, *geo, include_pad)
