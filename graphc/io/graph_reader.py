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
from graphc.ir.node import Attrs, Node, TupleNode, TupleType
from graphc.ir.phase import Phase

FORMAT = "graphc.graph"
VERSION = 2  # what this graphc writes
READS = (1, 2)  # what it reads: version 1 marked backward nodes with "forward_of", a node id
_PHASES = {p.value: p for p in Phase}

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
    versions = version if isinstance(version, tuple) else (version,)
    v = doc.get("version")
    if not is_a(v, int):
        expected = f"the integer {versions[0]}" if len(versions) == 1 else "an integer"
        raise GraphFileError(f"{path}: corrupt {part or what} (version is {show(v)}, expected {expected})")
    if v not in versions:
        reads = f"version {versions[0]}" if len(versions) == 1 else f"versions {', '.join(map(str, versions))}"
        raise GraphFileError(f"{path}: {what} version {v} is not supported; this graphc reads {reads}")
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

    def body(self, v, where: str, depth: int):
        """A sub-graph attribute: its nodes rebuilt into a Graph of their own."""
        from graphc.ir.graph import Graph
        from graphc.ir.subgraph import SubGraph

        spec = field(v, "$subgraph", dict, where)
        where = f"{where}.$subgraph"
        graph = Graph(field(spec, "name", str, where))
        _read_nodes(graph, field(spec, "nodes", list, where), self, where, depth + 1, version=VERSION)

        def nodes_at(key):
            ids = field(spec, key, list, where)
            if not all(is_a(j, int) and 0 <= j < len(graph.nodes) for j in ids):
                raise bad(f"{where}.{key}", ids, "ids of the body's nodes")
            return [graph.nodes[j] for j in ids]

        inputs, captured, outputs = nodes_at("inputs"), nodes_at("captured"), nodes_at("outputs")
        for n in inputs + captured:
            if not n.is_input:
                raise GraphFileError(f"corrupt graph file: {where}: body input {n.id} is a {n.op}, not an input")
            graph.inputs[n.name] = n
        try:
            sub = SubGraph(graph, inputs, outputs, captured)
        except GraphcError as exc:
            raise GraphFileError(f"corrupt graph file: {where}: {exc}") from None
        graph.sealed = True
        return sub

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
        if tag == "$subgraph":
            return self.body(v, where, depth)
        if tag == "$dict":
            pairs = field(v, tag, list, where)
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise bad(f"{where}.$dict", pairs, "[key, value] pairs")
            return {self.value(k, where, depth + 1): self.value(x, f"{where}[{show(k)}]", depth + 1) for k, x in pairs}
        raise GraphFileError(f"corrupt graph file: {where} has unknown attribute tag {tag!r}")


def _build(doc: dict, arrays: dict):
    from graphc.ir.graph import Graph

    graph = Graph(field(doc, "name", str), field(doc, "seed", int))
    specs = field(doc, "nodes", list)
    sections = {k: field(doc, k, dict) for k in ("inputs", "params", "outputs", "updates")}
    dec = _Decoder(arrays)
    _read_nodes(graph, specs, dec, "", 0, doc["version"])

    def node_at(j, what):
        if not is_a(j, int) or not 0 <= j < len(graph.nodes):
            raise GraphFileError(f"{what} refers to node {j!r}, which does not exist")
        return graph.nodes[j]

    for name, j in sections["inputs"].items():
        n = node_at(j, f"input {name!r}")
        if not n.is_input or n.name != name:
            raise GraphFileError(f"input {name!r} refers to node {j}, a {n.op} named {n.name!r}")
        graph.inputs[name] = n
    for name, p in sections["params"].items():
        _read_param(graph, dec, name, p, node_at)
    _check_all_listed(graph)
    for name, j in sections["outputs"].items():
        graph.outputs[name] = node_at(j, f"output {name!r}")
        if graph.outputs[name].is_tuple:
            raise GraphFileError(f"output {name!r}: node {j} has several outputs")
    for var, j in sections["updates"].items():
        if var not in graph.params:
            raise GraphFileError(f"update of {var!r}: no such parameter")
        n, p = node_at(j, f"update of {var!r}"), graph.params[var]
        if n.is_tuple:
            raise GraphFileError(f"update of {var!r}: node {j} has several outputs")
        if n.shape != p.shape or n.dtype != p.dtype:
            raise GraphFileError(f"update of {var!r}: new value is {n.type_str} but the variable is {p.type_str}")
        graph.updates[var] = n
    counts = doc.get("scope_counts", {})
    if not isinstance(counts, dict) or not all(is_a(v, int) and v >= 0 for v in counts.values()):
        raise bad("scope_counts", counts, "counts by scope")
    graph._scope_counts.update(counts)
    return graph


def _read_nodes(graph, specs: list, dec: _Decoder, prefix: str, depth: int, version: int) -> None:
    """Rebuild the nodes `specs` describes into `graph` (a graph's, or a body's: `prefix` names
    where the list is in the file), re-running every op's type inference."""
    from graphc.ops import registry  # importing graphc.ops registers every op

    if depth > MAX_DEPTH:
        raise GraphFileError(f"corrupt graph file: {prefix} nests bodies over {MAX_DEPTH} deep")
    for i, spec in enumerate(specs):
        at = f"{prefix}.nodes[{i}]" if prefix else f"nodes[{i}]"
        if not isinstance(spec, dict):
            raise bad(at, spec, "an object")
        if field(spec, "id", int, at) != i:
            raise GraphFileError(f"node {i} is recorded with id {spec['id']!r}")
        op = field(spec, "op", str, at)
        where = f"node {i} ({op})" if not prefix else f"{prefix}: node {i} ({op})"
        if op not in registry.all_ops():
            raise GraphFileError(f"{where}: unknown op {op!r} (is the module that declares it imported?)")
        ins = []
        for j in field(spec, "inputs", list, at):
            if not is_a(j, int) or not 0 <= j < i:
                raise GraphFileError(f"{where}: input {j!r} is not an earlier node")
            ins.append(graph.nodes[j])
        attrs = Attrs({k: dec.value(v, f"{at}.attrs.{k}", depth) for k, v in field(spec, "attrs", dict, at).items()})
        if "types" in spec:
            types = field(spec, "types", list, at)
            if not all(isinstance(t, list) and len(t) == 2 for t in types):
                raise bad(f"{at}.types", types, "[shape, dtype] pairs")
            typ = TupleType([(_shape(t[0], where), _dtype(t[1], f"{at}.types")) for t in types])
        else:
            typ = (_shape(field(spec, "shape", list, at), where), _dtype(field(spec, "dtype", str, at), f"{at}.dtype"))
        name = field(spec, "name", str, at, optional=True)
        scope = field(spec, "scope", str, at)
        location = field(spec, "location", str, at, optional=True)
        if version == 1:
            fwd = field(spec, "forward_of", int, at, optional=True)
            phase = Phase.FORWARD if fwd is None else Phase.BACKWARD
            grad_of = _label_of(specs, fwd) if fwd is not None else None
        else:
            text = field(spec, "phase", str, at)
            if text not in _PHASES:
                raise bad(f"{at}.phase", text, "forward, backward or update")
            phase, grad_of = _PHASES[text], field(spec, "grad_of", str, at, optional=True)
        if isinstance(typ, TupleType):
            node = TupleNode(graph, i, op, ins, attrs, typ, name, scope, location, phase, grad_of)
        else:
            node = Node(graph, i, op, ins, attrs, typ[0], typ[1], name, scope, location, phase, grad_of)
        _check_type(node, where, at)
        graph.nodes.append(node)


def _shape(shape: list, where: str) -> tuple:
    if not isinstance(shape, list) or not all(isinstance(d, str) or (is_a(d, int) and d >= 0) for d in shape):
        raise GraphFileError(f"{where}: bad shape {shape!r}")
    return tuple(shape)


def _dtype(dtype, at: str) -> str:
    if not isinstance(dtype, str):
        raise bad(at, dtype, "a string")
    try:
        return dtypes.canonical(dtype)
    except GraphcError as exc:
        raise GraphFileError(f"corrupt graph file: {at}: {exc}") from None


def _label_of(specs: list, j) -> str | None:
    """The label (name, else op#id) of node j of a version-1 file, for its backward nodes' grad_of;
    None for a forward node that was not saved (-1)."""
    if not 0 <= j < len(specs) or not isinstance(specs[j], dict):
        if j == -1:
            return None
        raise GraphFileError(f"corrupt graph file: forward_of {j!r} is not a node")
    spec = specs[j]
    return spec.get("name") if isinstance(spec.get("name"), str) else f"{spec.get('op')}#{j}"


def _read_param(graph, dec: _Decoder, name: str, p, node_at) -> None:
    at = f"params[{name!r}]"
    if not isinstance(p, dict):
        raise bad(at, p, "an object")
    n = node_at(field(p, "id", int, at), f"parameter {name!r}")
    if not n.is_param or n.name != name:
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
        if (n.is_param or n.is_input) and id(n) not in listed:
            section = "params" if n.is_param else "inputs"
            raise GraphFileError(f"corrupt graph file: node {n.id} is {n.op} {n.name!r}, which {section} lacks")


def _check_type(node, where, at):
    """Check a rebuilt node: a source's attributes, else re-run the op's inference and compare."""
    attrs, ins = node.attrs, node.inputs
    if node.is_const:
        v = attrs.get("value")
        shape, dtype = node.shape, node.dtype
        if not isinstance(v, np.ndarray) or tuple(v.shape) != shape or v.dtype != dtypes.to_numpy(dtype):
            got = f"{v.dtype}{list(v.shape)}" if isinstance(v, np.ndarray) else show(v)
            raise GraphFileError(f"{where}: constant value is {got}, recorded {dtype}{list(shape)}")
        return
    if node.is_param or node.is_input:
        kinds = {"name": str, "init": str, "trainable": bool} if node.is_param else {"name": str}
        missing = [k for k in kinds if k not in attrs]
        if missing or ins or node.is_tuple:
            raise GraphFileError(f"{where}: malformed {node.op} (missing attributes {missing}, {len(ins)} inputs)")
        for key, kind in kinds.items():
            if not is_a(attrs[key], kind):
                raise bad(f"{at}.attrs.{key}", attrs[key], _KINDS[kind])
        return
    if any(x.is_tuple for x in ins) and not node.opdef.takes_tuple:
        raise GraphFileError(f"{where}: reads a node with several outputs, which only tuple_get may")
    try:
        got = node.opdef.infer(list(ins), attrs)
    except Exception as exc:  # a corrupt attribute may fail inside infer in any way
        raise GraphFileError(f"{where}: does not type-check: {type(exc).__name__}: {exc}") from None
    got = got.items if isinstance(got, TupleType) else ((tuple(got[0]), got[1]),)
    if got != node.types:
        recorded = ", ".join(f"{d}{list(s)}" for s, d in node.types)
        given = ", ".join(f"{d}{list(s)}" for s, d in got)
        raise GraphFileError(f"{where}: recorded type {recorded} but its inputs give {given}")
