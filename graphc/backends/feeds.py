"""Validating the arrays a graph is run with; shared by every backend."""

import numpy as np

from graphc.errors import InputError, where
from graphc.ir import dtypes, shapes


def check_feeds(graph, feeds: dict, needed: list) -> tuple[dict, dict]:
    """(arrays by input name, symbol bindings); errors name the offending input."""
    feeds = dict(feeds or {})
    unknown = sorted(set(feeds) - set(graph.inputs))
    if unknown:
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
        value = feeds[node.name]
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        what = f"input {node.name!r} ({node.type_str}){where(node.location)}"
        want = dtypes.kind(node.dtype)
        got = (
            "f" if arr.dtype.kind == "f" else "i" if arr.dtype.kind in "iu" else "b" if arr.dtype.kind == "b" else None
        )
        if got != want:
            raise InputError(f"{what}: got an array of dtype {arr.dtype}, which does not convert to {node.dtype}")
        shapes.bind(node.shape, arr.shape, env, what)
        if arr.dtype != node.dtype or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=node.dtype)
        arrays[node.name] = arr
    return arrays, env
