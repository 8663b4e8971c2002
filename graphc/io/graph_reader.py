"""Reading graph files: the JSON document, checked field by field, rebuilt into a Graph.

Every field is checked for its exact JSON type before use (true is not an integer, 1.0 is not
a version), every op re-runs its type inference, every param and input node must be listed,
and parameter values must be finite (as an initial value must be). A defect raises
GraphFileError naming the field, e.g. `params['w'].trainable is "no", expected true or false`;
the caller adds the file name.
"""

import json
import re
from pathlib import Path

import numpy as np

from graphc.errors import GraphcError, GraphFileError
from graphc.ir import dtypes
from graphc.ir.node import Attrs, Node

FORMAT = "graphc.graph"
VERSION = 1

MAX_DEPTH = 64  # attribute values nest a few levels; a deeper one is corrupt (and would exhaust the stack)
_KINDS = {bool: "true or false", int: "an integer", str: "a string", list: "a list", dict: "an object"}


def show(v) -> str:
    """A JSON value as the file spells it, shortened."""
    try:
        text = json.dumps(v, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def is_a(v, kind) -> bool:
    """isinstance, except that a bool is not an int (JSON true is not 1)."""
    return isinstance(v, kind) and not (kind is int and isinstance(v, bool))


def bad(name: str, v, expected: str) -> GraphFileError:
    """The error for field `name` holding `v` instead of what is `expected`."""
    return GraphFileError(f"corrupt graph file: {name} is {show(v)}, expected {expected}")


def field(obj: dict, key: str, kind, where: str = "", optional: bool = False):
    """obj[key], checked to be of `kind` (None allowed when `optional`); `where` names obj."""
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise GraphFileError(f"corrupt graph file: {name} is missing")
    v = obj[key]
    if not (is_a(v, kind) or (optional and v is None)):
        raise bad(name, v, _KINDS[kind] + (" or null" if optional else ""))
    return v


def non_finite(value: np.ndarray) -> str | None:
    """'NaN' or 'inf' if a float array holds one, else None. Saved parameter and state values
    must be finite, as an initial value must be (a NaN in a file is a diverged or corrupt run)."""
    if value.dtype.kind != "f" or np.isfinite(value).all():
        return None
    return "NaN" if np.isnan(value).any() else "inf"


def read_document(path: Path, fmt: str, version: int, what: str, part: str | None = None) -> dict:
    """Parse a graphc JSON document, checking its format marker and version.

    `what` names the document in messages ("graph file", "checkpoint"), `part` the file itself
    when it differs ("checkpoint manifest"). Every defect raises GraphFileError, unchained.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GraphFileError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GraphFileError(f"{path}: corrupt {part or what} (invalid JSON: {exc}); truncated or corrupt?") from None
    except RecursionError:
        raise GraphFileError(f"{path}: corrupt {part or what} (JSON nested too deeply to be a graphc file)") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise GraphFileError(f"{path}: not a graphc {what} (format marker is {got!r}, expected {fmt!r})")
    v = doc.get("version")
    if not is_a(v, int):
        raise GraphFileError(f"{path}: corrupt {part or what} (version is {show(v)}, expected the integer {version})")
    if v != version:
        raise GraphFileError(f"{path}: {what} version {v} is not supported; this graphc reads version {version}")
    return doc


def read_arrays_name(doc: dict) -> str:
    """The name of the arrays file a graph document names (a plain name in the same folder)."""
    name = field(doc, "arrays", str)
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise bad("arrays", name, "a file name in the same folder")
    return name


def read_graph(doc: dict, arrays: dict):
    """The Graph described by `doc`, with its arrays from the .npz; GraphFileError on any defect."""
    try:
        return _build(doc, arrays)
    except GraphFileError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, GraphcError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise GraphFileError(f"corrupt graph file ({what})") from None


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def array(self, v, where: str) -> np.ndarray:
        spec = field(v, "$array", dict, where)
        where = f"{where}.$array"
        try:
            dtype = np.dtype(field(spec, "dtype", str, where))
        except TypeError:
            dtype = np.dtype(object)  # refused just below, with the name it has in the file
        if dtype.kind not in "biuf":
            raise bad(f"{where}.dtype", spec["dtype"], "a numeric dtype")
        if "npz" not in spec:
            value = self.value(spec.get("value"), f"{where}.value")
            if not is_a(value, bool | int | float):
                raise bad(f"{where}.value", spec.get("value"), "a number")
            return np.array(value, dtype=dtype)
        key = field(spec, "npz", str, where)
        shape = field(spec, "shape", list, where)
        if key not in self.arrays:
            raise GraphFileError(f"array {key!r} is missing from the arrays file")
        arr = self.arrays[key]
        if arr.dtype != dtype or list(arr.shape) != shape:
            raise GraphFileError(
                f"array {key!r} is {arr.dtype}{list(arr.shape)} in the arrays file, "
                f"but the graph file says {spec['dtype']}{spec['shape']}"
            )
        return arr

    def value(self, v, where: str = "attribute", depth: int = 0):
        if depth > MAX_DEPTH:
            root = re.sub(r"(?:\[[^\[\]]*\])+$", "", where)  # nodes[3].attrs.axes[0][0]... -> nodes[3].attrs.axes
            raise GraphFileError(f"corrupt graph file: {root} is nested over {MAX_DEPTH} deep")
        if isinstance(v, list):
            raise GraphFileError(f"corrupt graph file: {where} is an untagged list {show(v)}")
        if not isinstance(v, dict):
            return v
        if len(v) != 1:
            raise GraphFileError(f"corrupt graph file: {where} has bad attribute encoding {show(v)}")
        (tag,) = v
        if tag == "$tuple":
            items = field(v, tag, list, where)
            return tuple(self.value(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(items))
        if tag == "$array":
            return self.array(v, where)
        if tag == "$float":
            text = field(v, tag, str, where)
            if text not in ("nan", "inf", "-inf"):
                raise bad(f"{where}.$float", text, "nan, inf or -inf")
            return float(text)
        if tag == "$slice":
            parts = field(v, tag, list, where)
            if len(parts) != 3 or not all(p is None or is_a(p, int) for p in parts):
                raise bad(f"{where}.$slice", parts, "[start, stop, step]")
            return slice(*parts)
        if tag == "$ellipsis":
            return Ellipsis
        if tag == "$dict":
            pairs = field(v, tag, list, where)
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise bad(f"{where}.$dict", pairs, "[key, value] pairs")
            return {self.value(k, where, depth + 1): self.value(x, f"{where}[{show(k)}]", depth + 1) for k, x in pairs}
        raise GraphFileError(f"corrupt graph file: {where} has unknown attribute tag {tag!r}")


def _build(doc: dict, arrays: dict):
    from graphc.ir.graph import Graph
    from graphc.ops import registry  # importing graphc.ops registers every op

    graph = Graph(field(doc, "name", str), field(doc, "seed", int))
    specs = field(doc, "nodes", list)
    sections = {k: field(doc, k, dict) for k in ("inputs", "params", "outputs", "updates")}
    dec = _Decoder(arrays)
    late_forward = []
    for i, spec in enumerate(specs):
        at = f"nodes[{i}]"
        if not isinstance(spec, dict):
            raise bad(at, spec, "an object")
        if field(spec, "id", int, at) != i:
            raise GraphFileError(f"node {i} is recorded with id {spec['id']!r}")
        op = field(spec, "op", str, at)
        where = f"node {i} ({op})"
        if op not in registry.all_ops():
            raise GraphFileError(f"{where}: unknown op {op!r} (is the module that declares it imported?)")
        ins = []
        for j in field(spec, "inputs", list, at):
            if not is_a(j, int) or not 0 <= j < i:
                raise GraphFileError(f"{where}: input {j!r} is not an earlier node")
            ins.append(graph.nodes[j])
        attrs = Attrs({k: dec.value(v, f"{at}.attrs.{k}") for k, v in field(spec, "attrs", dict, at).items()})
        shape = tuple(field(spec, "shape", list, at))
        if not all(isinstance(d, str) or (is_a(d, int) and d >= 0) for d in shape):
            raise GraphFileError(f"{where}: bad shape {spec['shape']!r}")
        dtype = field(spec, "dtype", str, at)
        try:
            dtype = dtypes.canonical(dtype)
        except GraphcError as exc:
            raise GraphFileError(f"corrupt graph file: {at}.dtype: {exc}") from None
        name = field(spec, "name", str, at, optional=True)
        scope = field(spec, "scope", str, at)
        location = field(spec, "location", str, at, optional=True)
        _check_type(registry.get(op), op, ins, attrs, shape, dtype, where, at)
        fwd, fwd_id = None, field(spec, "forward_of", int, at, optional=True)
        if fwd_id is not None and 0 <= fwd_id < i:
            fwd = graph.nodes[fwd_id]
        elif fwd_id is not None:
            late_forward.append((i, fwd_id))
        graph.nodes.append(Node(graph, i, op, ins, attrs, shape, dtype, name, scope, location, fwd))
    for i, fwd_id in late_forward:
        # Backward flag whose forward node is later (or was outside the saved graph): link it
        # to that node, or to itself, so is_backward survives; Node is immutable otherwise.
        ok = 0 <= fwd_id < len(graph.nodes)
        if not ok and fwd_id != -1:
            raise GraphFileError(f"node {i}: forward_of {fwd_id!r} is not a node")
        object.__setattr__(graph.nodes[i], "forward_of", graph.nodes[fwd_id if ok else i])

    def node_at(j, what):
        if not is_a(j, int) or not 0 <= j < len(graph.nodes):
            raise GraphFileError(f"{what} refers to node {j!r}, which does not exist")
        return graph.nodes[j]

    for name, j in sections["inputs"].items():
        n = node_at(j, f"input {name!r}")
        if n.op != "input" or n.name != name:
            raise GraphFileError(f"input {name!r} refers to node {j}, a {n.op} named {n.name!r}")
        graph.inputs[name] = n
    for name, p in sections["params"].items():
        _read_param(graph, dec, name, p, node_at)
    _check_all_listed(graph)
    for name, j in sections["outputs"].items():
        graph.outputs[name] = node_at(j, f"output {name!r}")
    for var, j in sections["updates"].items():
        if var not in graph.params:
            raise GraphFileError(f"update of {var!r}: no such parameter")
        n, p = node_at(j, f"update of {var!r}"), graph.params[var]
        if n.shape != p.shape or n.dtype != p.dtype:
            raise GraphFileError(f"update of {var!r}: new value is {n.type_str} but the variable is {p.type_str}")
        graph.updates[var] = n
    counts = doc.get("scope_counts", {})
    if not isinstance(counts, dict) or not all(is_a(v, int) and v >= 0 for v in counts.values()):
        raise bad("scope_counts", counts, "counts by scope")
    graph._scope_counts.update(counts)
    return graph


def _read_param(graph, dec: _Decoder, name: str, p, node_at) -> None:
    at = f"params[{name!r}]"
    if not isinstance(p, dict):
        raise bad(at, p, "an object")
    n = node_at(field(p, "id", int, at), f"parameter {name!r}")
    if n.op != "param" or n.name != name:
        raise GraphFileError(f"parameter {name!r} refers to node {p['id']}, a {n.op} named {n.name!r}")
    for key, kind in (("init", str), ("trainable", bool)):
        if field(p, key, kind, at) != n.attrs[key]:
            raise GraphFileError(
                f"corrupt graph file: {at}.{key} is {show(p[key])} but node {n.id} says {show(n.attrs[key])}"
            )
    value = dec.array(field(p, "value", dict, at), f"{at}.value")
    if value.shape != n.shape or value.dtype != dtypes.to_numpy(n.dtype):
        raise GraphFileError(
            f"parameter {name!r}: stored value is {value.dtype}{list(value.shape)}, declared {n.type_str}"
        )
    if non_finite(value):
        raise GraphFileError(
            f"parameter {name!r}: stored value contains {non_finite(value)} (parameter values must be finite)"
        )
    graph.params[name] = n
    graph.values[name] = np.array(value, order="C")  # writable: updates store into it


def _check_all_listed(graph) -> None:
    """Every param and input node is one the file lists (else it would fail only when run)."""
    listed = {id(n) for n in (*graph.params.values(), *graph.inputs.values())}
    for n in graph.nodes:
        if n.op in ("param", "input") and id(n) not in listed:
            section = "params" if n.op == "param" else "inputs"
            raise GraphFileError(f"corrupt graph file: node {n.id} is {n.op} {n.name!r}, which {section} lacks")


def _check_type(opdef, op, ins, attrs, shape, dtype, where, at):
    """Re-run the op's inference and compare with the recorded type."""
    if op == "const":
        v = attrs.get("value")
        if not isinstance(v, np.ndarray) or tuple(v.shape) != shape or v.dtype != dtypes.to_numpy(dtype):
            got = f"{v.dtype}{list(v.shape)}" if isinstance(v, np.ndarray) else show(v)
            raise GraphFileError(f"{where}: constant value is {got}, recorded {dtype}{list(shape)}")
        return
    if op in ("param", "input"):
        missing = [k for k in (("name", "init", "trainable") if op == "param" else ("name",)) if k not in attrs]
        if missing or ins:
            raise GraphFileError(f"{where}: malformed {op} (missing attributes {missing}, {len(ins)} inputs)")
        kinds = {"name": str, "init": str, "trainable": bool} if op == "param" else {"name": str}
        for key, kind in kinds.items():
            if not is_a(attrs[key], kind):
                raise bad(f"{at}.attrs.{key}", attrs[key], _KINDS[kind])
        return
    try:
        got_shape, got_dtype = opdef.infer(list(ins), attrs)
    except Exception as exc:  # a corrupt attribute may fail inside infer in any way
        raise GraphFileError(f"{where}: does not type-check: {type(exc).__name__}: {exc}") from None
    if tuple(got_shape) != shape or got_dtype != dtype:
        raise GraphFileError(
            f"{where}: recorded type {dtype}{list(shape)} but its inputs give {got_dtype}{list(got_shape)}"
        )
