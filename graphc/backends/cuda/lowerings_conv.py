"""CUDA lowerings of conv2d (and its two gradient ops) and pooling, registered under "cuda".

Convolution is im2col + the tiled GEMM (library.Gemm), as on the CPU: the columns are laid out
(N, C*kh*kw, Ho, Wo), so for each image and group `W_g (O/g, k) @ cols[n, g] (k, Ho*Wo)` is the
NCHW output itself:
  conv2d:             out[n, g] = W_g @ cols[n, g]
  conv2d_grad_weight: gw_g      = sum_n gy[n, g] @ cols[n, g].T   (per image, then summed)
  conv2d_grad_input:  gx        = col2im(W_g.T @ gy[n, g])       (col2im scatter-adds)
The column and per-image buffers are device scratch allocated once per shape specialisation.
A conv's bias and activation run as the group's epilogue kernel on the conv's buffer (the
runtime binds it, as for matmul).
"""

import numpy as np

from graphc.backends.cuda import conv_kernels as ck
from graphc.backends.cuda import device
from graphc.backends.cuda import library as lib
from graphc.ops.registry import lowering

CUDA = "cuda"


def _geometry(a, kh, kw):
    (sh, sw), (dh, dw), pad = a["stride"], a["dilation"], a["padding"]
    return kh, kw, sh, sw, pad[0], pad[2], dh, dw


def _offsets(nb, g, per_b, per_g):
    """Offsets of batch entry q = (n, group) for n < nb: n * per_b + group * per_g."""
    q = np.arange(nb * g, dtype=np.int64)
    return (q // g) * per_b + (q % g) * per_g


@lowering("conv2d", CUDA)
def _conv(node, in_shapes, out_shape):
    (n, c, _, _), (o, cg, kh, kw) = in_shapes
    ho, wo = out_shape[2:]
    g = node.attrs["groups"]
    og, k, p = o // g, cg * kh * kw, ho * wo
    geo = _geometry(node.attrs, kh, kw)
    cols = device.empty((n, c * kh * kw, ho, wo), node.dtype)
    wq = np.tile(np.arange(g, dtype=np.int64) * (og * k), n)  # W_g for batch entry (n, g)
    gemm = lib.Gemm(node.dtype, og, p, k, wq, (k, 1), _offsets(n, g, c * kh * kw * p, k * p), (p, 1),
                    _offsets(n, g, o * p, og * p), (p, 1))  # fmt: skip

    def run(out, x, w):
        ck.im2col(cols, x, geo)
        gemm(out, w, cols)

    return run


@lowering("conv2d_grad_weight", CUDA)
def _conv_grad_weight(node, in_shapes, out_shape):
    (n, c, _, _), (_, _, ho, wo) = in_shapes
    o, cg, kh, kw = out_shape
    g = node.attrs["groups"]
    og, k, p = o // g, cg * kh * kw, ho * wo
    geo = _geometry(node.attrs, kh, kw)
    cols = device.empty((n, c * kh * kw, ho, wo), node.dtype)
    per_image = device.empty((n, o, k), node.dtype)
    # gy[n, g] (og, p) @ cols[n, g].T (p, k): cols read with (row, column) strides (1, p)
    gemm = lib.Gemm(node.dtype, og, k, p, _offsets(n, g, o * p, og * p), (p, 1), _offsets(n, g, c * kh * kw * p, k * p),
                    (1, p), _offsets(n, g, o * k, og * k), (k, 1))  # fmt: skip

    def run(out, x, gy):
        ck.im2col(cols, x, geo)
        gemm(per_image, gy, cols)
        ck.sum0(out, per_image, n)

    return run


@lowering("conv2d_grad_input", CUDA)
def _conv_grad_input(node, in_shapes, out_shape):
    (n, o, ho, wo), (_, cg, kh, kw) = in_shapes
    c = out_shape[1]
    g = node.attrs["groups"]
    og, k, p = o // g, cg * kh * kw, ho * wo
    geo = _geometry(node.attrs, kh, kw)
    cols = device.empty((n, c * kh * kw, ho, wo), node.dtype)
    wq = np.tile(np.arange(g, dtype=np.int64) * (og * k), n)
    # W_g.T (k, og): W_g (og, k) read with (row, column) strides (1, k)
    gemm = lib.Gemm(node.dtype, k, p, og, wq, (1, k), _offsets(n, g, o * p, og * p), (p, 1),
                    _offsets(n, g, c * kh * kw * p, k * p), (p, 1))  # fmt: skip

    def run(out, gy, w):
        gemm(cols, w, gy)
        ck.col2im(out, cols, geo)

    return run


# -- pooling ------------------------------------------------------------------------------------------
def _pool_geometry(a):
    (kh, kw), (sh, sw), pad = a["kernel"], a["stride"], a["padding"]
    return kh, kw, sh, sw, pad[0], pad[2]


@lowering("max_pool2d", CUDA)
def _max_pool(node, in_shapes, out_shape):
    geo = _pool_geometry(node.attrs)
    return lambda out, x: ck.max_pool(out, x, geo)


@lowering("max_pool2d_grad", CUDA)
def _max_pool_grad(node, in_shapes, out_shape):
    geo = _pool_geometry(node.attrs)
    return lambda out, x, gy: ck.max_pool_grad(out, x, gy, geo)


@lowering("max_pool2d_gather", CUDA)
def _max_pool_gather(node, in_shapes, out_shape):
    geo = _pool_geometry(node.attrs)
    return lambda out, x, h: ck.max_pool_gather(out, x, h, geo)


@lowering("avg_pool2d", CUDA)
def _avg_pool(node, in_shapes, out_shape):
    geo, inc = _pool_geometry(node.attrs), bool(node.attrs["count_include_pad"])
    return lambda out, x: ck.avg_pool(out, x, geo, inc)


@lowering("avg_pool2d_grad", CUDA)
def _avg_pool_grad(node, in_shapes, out_shape):
    geo, inc = _pool_geometry(node.attrs), bool(node.attrs["count_include_pad"])
    return lambda out, gy: ck.avg_pool_grad(out, gy, geo, inc)
