"""Parameter initializers: seeded, named, and usable from a graph file by name."""

import math

import numpy as np

from graphc.errors import AttributeValueError
from graphc.ir import dtypes


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) for dense (in, out) and conv (out, in, kh, kw) weights."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _glorot_uniform(shape, rng):
    fi, fo = fans(shape)
    lim = math.sqrt(6.0 / max(fi + fo, 1))
    return rng.uniform(-lim, lim, shape)


def _glorot_normal(shape, rng):
    fi, fo = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / max(fi + fo, 1)), shape)


def _he_uniform(shape, rng):
    lim = math.sqrt(6.0 / max(fans(shape)[0], 1))
    return rng.uniform(-lim, lim, shape)


def _he_normal(shape, rng):
    return rng.normal(0.0, math.sqrt(2.0 / max(fans(shape)[0], 1)), shape)


INITIALIZERS = {
    "zeros": lambda shape, rng: np.zeros(shape),
    "ones": lambda shape, rng: np.ones(shape),
    "normal": lambda shape, rng: rng.normal(0.0, 0.01, shape),
    "uniform": lambda shape, rng: rng.uniform(-0.05, 0.05, shape),
    "glorot_uniform": _glorot_uniform,
    "xavier_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "xavier_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
}


def initial_value(init, shape, dtype, rng, what: str) -> tuple[np.ndarray, str]:
    """(array, description) for an initializer name, a callable(shape, rng) or an array."""
    if isinstance(init, str):
        if init not in INITIALIZERS:
            raise AttributeValueError(
                f"{what}: unknown initializer {init!r}; expected one of {', '.join(INITIALIZERS)}"
            )
        value, desc = INITIALIZERS[init](shape, rng), init
    elif callable(init):
        value, desc = init(shape, rng), getattr(init, "__name__", "custom")
    else:
        value, desc = init, "array"
    try:
        value = np.asarray(value)
    except (ValueError, TypeError) as exc:  # a ragged list
        raise AttributeValueError(f"{what}: initial value is not an array of numbers ({exc})") from None
    if value.dtype.kind not in "biuf":
        raise AttributeValueError(
            f"{what}: initial value has dtype {value.dtype}; expected numbers (bool, int or float) for {dtype}"
        )
    if value.shape != tuple(shape):
        raise AttributeValueError(f"{what}: initial value has shape {value.shape}, expected {tuple(shape)}")
    if not np.all(np.isfinite(value)) and value.dtype.kind == "f":
        raise AttributeValueError(f"{what}: initial value contains NaN or inf")
    bad = dtypes.unfit(value, dtype)
    if bad is not None:
        raise AttributeValueError(f"{what}: initial value {bad} does not fit {dtype}")
    return np.array(value, dtype=dtype, order="C"), desc
