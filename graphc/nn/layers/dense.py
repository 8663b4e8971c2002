"""Dense (fully connected), Flatten and Dropout layers."""

import math
import zlib

from graphc.errors import AttributeValueError
from graphc.ir.init import INITIALIZERS
from graphc.nn.layers.base import Layer, check_int, get_activation
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["Dense", "Flatten", "Dropout", "dense", "check_init"]


def check_init(owner: str, what: str, init):
    if isinstance(init, str) and init not in INITIALIZERS:
        error(AttributeValueError, owner, f"unknown {what} {init!r}; expected one of {', '.join(INITIALIZERS)}")
    if not isinstance(init, str) and not callable(init):
        error(AttributeValueError, owner, f"{what} must be an initializer name or a function(shape, rng), got {init!r}")
    return init


class Dense(Layer):
    """y = activation(x @ w + b) over the last axis; w: (in, units), b: (units,).

    Any leading axes are kept: (batch, features) -> (batch, units), and a sequence
    (batch, time, features) -> (batch, time, units), every step through the same weights.
    `in` is read from the first input's last dimension. Parameters take the input's
    float dtype unless `dtype` is given.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        init="glorot_uniform",
        bias_init="zeros",
        dtype: str | None = None,
        name: str | None = None,
    ):
        self.units = check_int("Dense", "units", units)
        self.activation = get_activation(activation, "Dense")
        self.use_bias = bool(use_bias)
        self.init = check_init("Dense", "init", init)
        self.bias_init = check_init("Dense", "bias_init", bias_init)
        self.dtype = dtype
        super().__init__(name)

    def signature(self, x):
        return (x.shape[-1] if x.ndim else None, x.dtype)

    def _mismatch(self, sig):
        return f" ({self._signature[0]} input features expected)"

    def build(self, x):
        self.need_rank(x, range(1, 64), "a (..., features)")
        n_in = self.need_concrete(x, -1, "feature size")
        dtype = self.float_dtype(x, self.dtype)
        self.w = self.add_param("w", (n_in, self.units), self.init, dtype)
        self.b = self.add_param("b", (self.units,), self.bias_init, dtype) if self.use_bias else None

    def forward(self, x, training):
        y = F.matmul(F.cast(x, self.w.dtype), self.w)
        if self.b is not None:
            y = y + self.b
        return y if self.activation is None else self.activation(y)


def dense(x, units: int, activation=None, **kw):
    """Functional form: a fresh Dense layer applied to x (gc.nn.dense(x, 256))."""
    return Dense(units, activation, **kw)(x)


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1*d2*...)."""

    def forward(self, x, training):
        if x.ndim < 2:
            return x
        return F.flatten(x, 1)


class Dropout(Layer):
    """Zeroes each element with probability p while training and scales the rest by 1/(1-p).

    Identity when called with training=False. The mask is seeded: `seed` if given, else one
    derived from the graph seed and the layer's scope, and it changes from step to step.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None, name: str | None = None):
        if isinstance(p, bool) or not isinstance(p, int | float) or not (0.0 <= p < 1.0) or math.isnan(p):
            error(AttributeValueError, "Dropout", f"p must be a probability in [0, 1), got {p!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            error(AttributeValueError, "Dropout", f"seed must be a non-negative int or None, got {seed!r}")
        self.p = float(p)
        self.seed = seed
        super().__init__(name)

    def build(self, x):
        self.need_float(x)
        if self.seed is None:
            self.seed = (self.graph.seed * 1_000_003 + zlib.crc32(self.scope.encode())) % (2**31)

    def forward(self, x, training):
        if not training or self.p == 0.0:
            return x
        return F.dropout(x, self.p, seed=self.seed, training=True)
