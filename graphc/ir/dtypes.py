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


def promote(a: str, b: str) -> str:
    """NumPy's promotion restricted to graphc's dtypes (bool < int32 < int64 < float32 < float64)."""
    if a == b:
        return a
    order = ["bool", "int32", "int64", "float32", "float64"]
    hi = max(order.index(a), order.index(b))
    # int64 with float32 promotes to float32, as in JAX; NumPy would widen to float64.
    return order[hi]
