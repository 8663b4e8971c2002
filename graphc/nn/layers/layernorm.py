"""Layer normalization over the last axis (per sample and time step)."""

import math

from graphc.errors import AttributeValueError
from graphc.nn.layers.base import Layer
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["LayerNorm"]


class LayerNorm(Layer):
    """y = gain * (x - mean) / sqrt(var + eps) + bias, mean and (biased) variance over the last axis.

    Works on any (..., features) input, e.g. (batch, time, features) between recurrent layers;
    the same in training and evaluation (no running statistics). Parameters `<scope>/gain`
    (ones) and `<scope>/bias` (zeros), of shape (features,), unless affine=False.
    """

    def __init__(self, eps: float = 1e-5, affine: bool = True, dtype: str | None = None, name: str | None = None):
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not (eps > 0 and math.isfinite(eps)):
            error(AttributeValueError, "LayerNorm", f"eps must be a positive number, got {eps!r}")
        self.eps, self.affine, self.dtype = float(eps), bool(affine), dtype
        super().__init__(name)

    def signature(self, x):
        return (x.shape[-1] if x.ndim else None, x.dtype)

    def _mismatch(self, sig):
        return f" ({self._signature[0]} features expected)"

    def build(self, x):
        self.need_rank(x, range(1, 64), "a (..., features)")
        n = self.need_concrete(x, -1, "feature size")
        self.param_dtype = self.float_dtype(x, self.dtype)
        if self.affine:
            self.gain = self.add_param("gain", (n,), "ones", self.param_dtype)
            self.bias = self.add_param("bias", (n,), "zeros", self.param_dtype)

    def forward(self, x, training):
        x = F.cast(x, self.param_dtype)
        centered = x - F.mean(x, -1, keepdims=True)
        y = centered / F.sqrt(F.mean(centered * centered, -1, keepdims=True) + self.eps)
        return y * self.gain + self.bias if self.affine else y
