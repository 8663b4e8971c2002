"""Batch normalization over the channel axis (axis 1): (N, C), (N, C, L) or (N, C, H, W)."""

import math

from graphc.errors import AttributeValueError, GraphStructureError, where
from graphc.ir.location import user_location
from graphc.nn.layers.base import Layer
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["BatchNorm"]


class BatchNorm(Layer):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1).

    Training (training=True) normalises with the batch's statistics and registers graph
    updates of the running averages, PyTorch's convention:
    running = (1 - momentum) * running + momentum * batch (the running variance uses the
    unbiased batch variance). Evaluation (training=False) uses the running statistics.
    Parameters: `<scope>/gamma`, `<scope>/beta`; state: `<scope>/running_mean`, `<scope>/running_var`.
    """

    def __init__(
        self,
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: str | None = None,
        name: str | None = None,
    ):
        if isinstance(momentum, bool) or not isinstance(momentum, int | float) or not 0.0 <= momentum <= 1.0:
            error(AttributeValueError, "BatchNorm", f"momentum must be in [0, 1], got {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not (eps > 0 and math.isfinite(eps)):
            error(AttributeValueError, "BatchNorm", f"eps must be a positive number, got {eps!r}")
        self.momentum, self.eps, self.affine, self.dtype = float(momentum), float(eps), bool(affine), dtype
        super().__init__(name)

    def signature(self, x):
        return (x.ndim, x.shape[1] if x.ndim > 1 else None, x.dtype)

    def _mismatch(self, sig):
        return f" ({self._signature[1]} channels expected)"

    def build(self, x):
        self.need_rank(x, range(2, 64), "a (batch, channels, ...)")
        c = self.need_concrete(x, 1, "channel count")
        dtype = self.float_dtype(x, self.dtype)
        if self.affine:
            self.gamma = self.add_param("gamma", (c,), "ones", dtype)
            self.beta = self.add_param("beta", (c,), "zeros", dtype)
        self.running_mean = self.add_param("running_mean", (c,), "zeros", dtype, trainable=False)
        self.running_var = self.add_param("running_var", (c,), "ones", dtype, trainable=False)
        self.channels = c

    def forward(self, x, training):
        x = F.cast(x, self.running_mean.dtype)
        axes = (0, *range(2, x.ndim))
        bshape = (1, self.channels) + (1,) * (x.ndim - 2)
        if training:
            mean = F.mean(x, axes, keepdims=True)
            centered = x - mean
            var = F.mean(centered * centered, axes, keepdims=True)
            self._update_running(x, axes, mean, var)
        else:
            mean, var = F.reshape(self.running_mean, bshape), F.reshape(self.running_var, bshape)
            centered = x - mean
        y = centered / F.sqrt(var + self.eps)
        if self.affine:
            y = y * F.reshape(self.gamma, bshape) + F.reshape(self.beta, bshape)
        return y

    def _update_running(self, x, axes, mean, var):
        g, m = self.graph, self.momentum
        if self.running_mean.name in g.updates:
            raise GraphStructureError(
                f"{self._what()} is already called with training=True in graph {g.name!r}; its running "
                "statistics can be updated from one training call only" + where(user_location())
            )
        n = F.shape_size(x, axes, x.dtype)
        unbiased = var * (n / F.maximum(n - 1.0, 1.0))
        c = (self.channels,)
        g.update(self.running_mean, self.running_mean * (1.0 - m) + F.reshape(mean, c) * m)
        g.update(self.running_var, self.running_var * (1.0 - m) + F.reshape(unbiased, c) * m)
