"""Validating the arrays a graph is run with; shared by every backend.

The policy (docs/ir.md, "Feeding inputs"): a float input takes float, integer and bool values
and converts them to its dtype; an integer input takes integer and bool values, never floats;
a bool input takes bools only. A value that the input's dtype cannot hold (2**40 for int32,
1e39 for float32) is refused, never wrapped or turned into inf. NaN and empty batches pass:
the graph computes what NumPy computes.
"""

import numpy as np

from graphc.errors import InputError, where
from graphc.ir import dtypes, shapes

# The value kinds (numpy dtype.kind) each input family takes.
_ACCEPTS = {"f": "fiub", "i": "iub", "b": "b"}
_TAKES = {
    "f": "a float input takes floats, integers and bools",
    "i": "an integer input takes integers and bools; round or cast floats first",
    "b": "a bool input takes bools only",
}


def check_feeds(graph, feeds: dict, needed: list) -> tuple[dict, dict]:
    """(arrays by input name, symbol bindings); errors name the offending input."""
    feeds = dict(feeds or {})
    if any(k not in graph.inputs for k in feeds):
        unknown = sorted(set(feeds) - set(graph.inputs))
        known = ", ".join(graph.inputs) or "none"
        raise InputError(f"graph {graph.name!r} has no input named {', '.join(map(repr, unknown))} (inputs: {known})")
    missing = [n.name for n in needed if n.name not in feeds]
    if missing:
        raise InputError(
            f"graph {graph.name!r}: missing input {', '.join(map(repr, missing))} "
            f"({'; '.join(f'{n.name}: {n.type_str}' for n in needed if n.name in missing)})"
        )
    env: dict[str, int] = {}
    arrays = {}
    for node in needed:
        what = _What(node)
        value = feeds[node.name]
        if type(value) is np.ndarray and value.dtype == _dtype(node.dtype) and value.flags.c_contiguous:
            # an array as the input takes it (the usual feed): every value fits, nothing to convert
            shapes.bind(node.shape, value.shape, env, what)
            arrays[node.name] = value
            continue
        arr = _as_array(value, what, node.dtype)
        if arr.dtype.kind not in _ACCEPTS[dtypes.kind(node.dtype)]:
            raise InputError(
                f"{what}: got an array of dtype {arr.dtype}, which does not convert to {node.dtype} "
                f"({_TAKES[dtypes.kind(node.dtype)]})"
            )
        bad = dtypes.unfit(arr, node.dtype)
        if bad is not None:
            raise InputError(f"{what}: value {bad} does not fit {node.dtype}")
        shapes.bind(node.shape, arr.shape, env, what)
        if arr.dtype != node.dtype or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=node.dtype)
        arrays[node.name] = arr
    return arrays, env


class _What:
    """The words naming an input in an error message, made only when one is raised (a call
    that raises none, the usual one, does not pay for them)."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    def __str__(self) -> str:
        n = self.node
        return f"input {n.name!r} ({n.type_str}){where(n.location)}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_DTYPES: dict = {}


def _dtype(name: str) -> np.dtype:
    got = _DTYPES.get(name)
    if got is None:
        got = _DTYPES[name] = np.dtype(name)
    return got


def _as_array(value, what: _What, dtype: str) -> np.ndarray:
    """value as an ndarray; a ragged list, or integers beyond int64/uint64, are an InputError."""
    if isinstance(value, np.ndarray):
        return value
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        if "inhomogeneous" in str(exc):
            raise InputError(f"{what}: got a ragged list (rows of different lengths), not an array") from None
        raise InputError(f"{what}: got a value that is not an array: {exc}") from None
    if arr.dtype.kind == "O" or (arr.dtype.kind == "f" and not dtypes.is_float(dtype)):
        # Python ints past int64 (NumPy makes objects), or mixing int64 and uint64 ranges (floats).
        objs = np.asarray(value, dtype=object)
        if all(isinstance(v, int) for v in objs.flat):
            bad = dtypes.unfit(objs, dtype)
            if bad is not None:
                raise InputError(f"{what}: value {bad} does not fit {dtype}")
            if arr.dtype.kind == "O":  # big ints that a float dtype holds
                return objs.astype(np.float64)
    if arr.dtype.kind == "O":
        raise InputError(f"{what}: got a list of Python objects, which does not convert to {dtype}")
    return arr
