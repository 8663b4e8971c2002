"""The dtypes a graph value may have, and how they map to NumPy and promote."""

import numpy as np

from graphc.errors import DTypeError

DTYPES = ("float32", "float64", "int32", "int64", "bool")
DEFAULT_FLOAT = "float32"
SHORT = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}
_ALIASES = {v: k for k, v in SHORT.items()}


def canonical(dtype) -> str:
    """Normalise 'f32', np.float32, np.dtype('float32') ... to 'float32'."""
    if isinstance(dtype, str):
        name = _ALIASES.get(dtype, dtype)
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError as exc:
            raise DTypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}") from exc
    if name not in DTYPES:
        raise DTypeError(f"unsupported dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return name


def to_numpy(dtype: str) -> np.dtype:
    return np.dtype(dtype)


def is_float(dtype: str) -> bool:
    return dtype in ("float32", "float64")


def is_int(dtype: str) -> bool:
    return dtype in ("int32", "int64")


def kind(dtype: str) -> str:
    """'f', 'i' or 'b': the family an input of this dtype accepts values from."""
    return "f" if is_float(dtype) else "i" if is_int(dtype) else "b"


def unfit(values, dtype: str) -> str | None:
    """The first of `values` that `dtype` cannot hold, as text, else None.

    An integer dtype holds integers in its range (integral floats too, not NaN or inf); a float
    dtype holds every value that does not overflow to inf (rounding is allowed); bool holds
    bools and 0/1. Values may be a scalar, a nested list or an array of any dtype, object included.
    """
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.size == 0:
        return None
    if arr.dtype.kind == "O":
        for v in arr.flat:
            if not _holds(v, dtype):
                return repr(v)
        return None
    if arr.dtype.kind not in "biuf":
        return f"{arr.flat[0]!r} (dtype {arr.dtype})"
    bad = _unfit_mask(arr, np.dtype(dtype))
    if bad is None or not bad.any():
        return None
    v = arr[bad].flat[0]
    return repr(v.item() if isinstance(v, np.generic) else v)


def _unfit_mask(arr: np.ndarray, target: np.dtype):
    """Where arr's elements do not fit target (None: all fit)."""
    if np.can_cast(arr.dtype, target, "safe") or arr.dtype.kind == "b":
        return None
    if target.kind == "b":
        return (arr != 0) & (arr != 1)
    if target.kind == "f":
        if arr.dtype.kind != "f":
            return None  # every int64/uint64 is below float32's max: it rounds, never overflows
        top = float(np.finfo(target).max)
        if -top <= arr.min() and arr.max() <= top:  # the common case, without a converted copy
            return None
        with np.errstate(over="ignore"):
            return np.isinf(arr.astype(target)) & np.isfinite(arr)
    info = np.iinfo(target)
    if arr.dtype.kind == "f":
        lo, hi = -(2.0 ** (info.bits - 1)), 2.0 ** (info.bits - 1)  # exact in every float dtype
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(arr) | (arr < lo) | (arr >= hi) | (np.trunc(arr) != arr)
    return (arr < info.min) | (arr > info.max)


def _holds(v, dtype: str) -> bool:
    if isinstance(v, bool | np.bool_):
        return True
    if not isinstance(v, int | float | np.integer | np.floating):
        return False
    if dtype == "bool":
        return v in (0, 1)
    if is_int(dtype):
        info = np.iinfo(dtype)
        return v == v and abs(v) != float("inf") and int(v) == v and info.min <= int(v) <= info.max
    try:
        return abs(v) == float("inf") or v != v or abs(float(v)) <= float(np.finfo(dtype).max)
    except OverflowError:  # a Python int beyond float64
        return False


def promote(a: str, b: str) -> str:
    """NumPy's promotion restricted to graphc's dtypes (bool < int32 < int64 < float32 < float64)."""
    if a == b:
        return a
    order = ["bool", "int32", "int64", "float32", "float64"]
    hi = max(order.index(a), order.index(b))
    # int64 with float32 promotes to float32, as in JAX; NumPy would widen to float64.
    return order[hi]
