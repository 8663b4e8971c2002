"""Convolution and pooling layers on NCHW inputs."""

from graphc.errors import AttributeValueError
from graphc.nn.layers.base import Layer, check_int, check_pair, get_activation
from graphc.nn.layers.dense import check_init
from graphc.ops import api as F
from graphc.ops.registry import error

__all__ = ["Conv2D", "MaxPool2D", "AvgPool2D"]


def _check_padding(owner: str, padding, stride):
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            error(AttributeValueError, owner, f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            error(AttributeValueError, owner, f"padding='same' needs stride 1, got stride={stride}")
        return padding
    if isinstance(padding, tuple | list) and len(padding) == 2 and all(isinstance(p, tuple | list) for p in padding):
        return tuple(check_pair(owner, "padding", p, 0) for p in padding)
    return check_pair(owner, "padding", padding, 0)


class Conv2D(Layer):
    """y = activation(conv2d(x, w) + b): x (N, C, H, W), w (filters, C/groups, kh, kw), b (filters,).

    padding: int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (stride 1).
    The input channel count C is read from the first input.
    """

    def __init__(
        self,
        filters: int,
        kernel,
        stride=1,
        padding=0,
        activation=None,
        use_bias: bool = True,
        dilation=1,
        groups: int = 1,
        init="glorot_uniform",
        bias_init="zeros",
        dtype: str | None = None,
        name: str | None = None,
    ):
        self.filters = check_int("Conv2D", "filters", filters)
        self.kernel = check_pair("Conv2D", "kernel", kernel)
        self.stride = check_pair("Conv2D", "stride", stride)
        self.dilation = check_pair("Conv2D", "dilation", dilation)
        self.padding = _check_padding("Conv2D", padding, self.stride)
        self.groups = check_int("Conv2D", "groups", groups)
        if filters % groups:
            error(AttributeValueError, "Conv2D", f"filters ({filters}) must be divisible by groups ({groups})")
        self.activation = get_activation(activation, "Conv2D")
        self.use_bias = bool(use_bias)
        self.init = check_init("Conv2D", "init", init)
        self.bias_init = check_init("Conv2D", "bias_init", bias_init)
        self.dtype = dtype
        super().__init__(name)

    def signature(self, x):
        return (x.ndim, x.shape[1] if x.ndim > 1 else None, x.dtype)

    def _mismatch(self, sig):
        return f" ({self._signature[1]} input channels expected)"

    def build(self, x):
        self.need_rank(x, (4,), "an NCHW (batch, channels, height, width)")
        c = self.need_concrete(x, 1, "channel count")
        if c % self.groups:
            msg = f"input channels ({c}) must be divisible by groups ({self.groups})"
            error(AttributeValueError, self._what(), msg)
        dtype = self.float_dtype(x, self.dtype)
        shape = (self.filters, c // self.groups, *self.kernel)
        self.w = self.add_param("w", shape, self.init, dtype)
        self.b = self.add_param("b", (self.filters,), self.bias_init, dtype) if self.use_bias else None

    def forward(self, x, training):
        y = F.conv2d(F.cast(x, self.w.dtype), self.w, self.stride, self.padding, self.dilation, self.groups)
        if self.b is not None:
            y = y + F.reshape(self.b, (1, self.filters, 1, 1))
        return y if self.activation is None else self.activation(y)


class _Pool2D(Layer):
    _op = ""

    def __init__(self, kernel, stride=None, padding=0, name: str | None = None):
        owner = type(self).__name__
        self.kernel = check_pair(owner, "kernel", kernel)
        self.stride = self.kernel if stride is None else check_pair(owner, "stride", stride)
        self.padding = check_pair(owner, "padding", padding, 0)
        for p, k in zip(self.padding, self.kernel):
            if 2 * p > k:
                msg = f"padding {self.padding} must be at most half the kernel {self.kernel}"
                error(AttributeValueError, owner, msg)
        super().__init__(name)

    def build(self, x):
        self.need_rank(x, (4,), "an NCHW (batch, channels, height, width)")
        self.need_float(x)

    def forward(self, x, training):
        return getattr(F, self._op)(x, self.kernel, self.stride, self.padding)


class MaxPool2D(_Pool2D):
    """Max over kernel windows (stride defaults to the kernel)."""

    _op = "max_pool2d"


class AvgPool2D(_Pool2D):
    """Mean over kernel windows (stride defaults to the kernel)."""

    _op = "avg_pool2d"
