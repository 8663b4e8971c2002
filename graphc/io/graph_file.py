"""The graph file: JSON for the structure, a sidecar .npz for arrays. No pickles.

    {"format": "graphc.graph", "version": 1, "name": ..., "seed": ..., "arrays": "g.npz",
     "arrays_sha256": ..., "nodes": [{"id", "op", "inputs", "attrs", "shape", "dtype", "name",
     "scope", "location", "forward_of"}, ...], "inputs": {name: id}, "params": {name: {"id",
     "init", "trainable", "value"}}, "outputs": {name: id}, "updates": {var: id}}

Attribute values are encoded as JSON with tagged objects for what JSON lacks: tuples are
{"$tuple": [...]}, arrays {"$array": ...} (0-d inline, others by key in the .npz), non-finite
floats {"$float": "nan"}, slices, Ellipsis and dicts. Both files are written to a temporary
file in the same directory and moved into place (os.replace), npz first; the JSON records the
npz's SHA-256, so a crash between the two moves is detected on load as a mismatch.
"""

import contextlib
import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from graphc.errors import GraphcError, GraphFileError
from graphc.ir import dtypes
from graphc.ir.node import Attrs, Node

FORMAT = "graphc.graph"
VERSION = 1


def sidecar_path(path) -> Path:
    """'g.json' -> 'g.npz'; any other name gets '.npz' appended."""
    p = Path(path)
    return p.with_suffix(".npz") if p.suffix == ".json" else p.with_name(p.name + ".npz")


# -- writing ------------------------------------------------------------------------------


def atomic_write(path, data: bytes) -> None:
    """Write bytes to path via a temporary file in the same directory and os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes 0600 files; keep an existing file's mode, else the usual 0644.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, arr: np.ndarray, inline_scalar: bool = True) -> dict:
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biuf":
            raise GraphFileError(f"cannot save an array of dtype {arr.dtype} (numeric and bool only)")
        if arr.ndim == 0 and inline_scalar:
            return {"$array": {"dtype": arr.dtype.name, "value": self.value(arr.item())}}
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.array(arr, order="C")  # ascontiguousarray would make 0-d 1-d
        return {"$array": {"dtype": arr.dtype.name, "shape": list(arr.shape), "npz": key}}

    def value(self, v, where: str = "attribute"):
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, np.generic):
            return self.value(v.item(), where)
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, tuple | list):
            return {"$tuple": [self.value(x, where) for x in v]}
        if isinstance(v, slice):
            return {"$slice": [self.value(v.start), self.value(v.stop), self.value(v.step)]}
        if v is Ellipsis:
            return {"$ellipsis": True}
        if isinstance(v, dict):
            return {"$dict": [[self.value(k, where), self.value(x, where)] for k, x in v.items()]}
        raise GraphFileError(f"cannot save {where} value {v!r} of type {type(v).__name__}")


def graph_to_dict(graph) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-able description, arrays for the .npz) of a graph."""
    enc = _Encoder()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    nodes = []
    for i, n in enumerate(graph.nodes):
        if n.id != i:
            raise GraphFileError(f"graph {graph.name!r}: node {n.label} has id {n.id} at position {i}")
        fwd = None
        if n.forward_of is not None:
            # A forward node outside this graph (left behind by a pass) keeps only the flag.
            fwd = index.get(id(n.forward_of), -1)
        nodes.append({
            "id": i, "op": n.op, "inputs": [_ref(index, x, n) for x in n.inputs],
            "attrs": {k: enc.value(v, f"{n.label}.{k}") for k, v in n.attrs.items()},
            "shape": list(n.shape), "dtype": n.dtype, "name": n.name, "scope": n.scope,
            "location": n.location, "forward_of": fwd,
        })  # fmt: skip
    params = {}
    for name, p in graph.params.items():
        value = graph.values.get(name)
        if value is None:
            raise GraphFileError(f"graph {graph.name!r}: parameter {name!r} has no value")
        params[name] = {"id": index[id(p)], "init": p.attrs["init"], "trainable": p.attrs["trainable"],
                        "value": enc.array(np.asarray(value), inline_scalar=False)}  # fmt: skip
    doc = {
        "format": FORMAT, "version": VERSION, "name": graph.name, "seed": graph.seed,
        "nodes": nodes,
        "inputs": {k: index[id(v)] for k, v in graph.inputs.items()},
        "params": params,
        "outputs": {k: index[id(v)] for k, v in graph.outputs.items()},
        "updates": {k: index[id(v)] for k, v in graph.updates.items()},
        "scope_counts": dict(getattr(graph, "_scope_counts", {})),
    }  # fmt: skip
    return doc, enc.arrays


def _ref(index, x, n):
    if id(x) not in index:
        raise GraphFileError(f"node {n.label} reads {x.label}, which is not in the graph")
    return index[id(x)]


def save_graph(graph, path) -> Path:
    """Write `graph` to `path` (JSON) and its arrays to the sidecar .npz, both atomically."""
    path = Path(path)
    doc, arrays = graph_to_dict(graph)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz_bytes = buf.getvalue()
    npz = sidecar_path(path)
    doc["arrays"] = npz.name
    doc["arrays_sha256"] = hashlib.sha256(npz_bytes).hexdigest()
    # One node per line: the file stays readable and diffs well.
    nodes = ",\n  ".join(json.dumps(n, allow_nan=False) for n in doc.pop("nodes"))
    text = json.dumps(doc, indent=1, allow_nan=False)[:-2] + f',\n "nodes": [\n  {nodes}\n ]\n}}\n'

    atomic_write(npz, npz_bytes)
    atomic_write(path, text.encode())
    return path


# -- reading ------------------------------------------------------------------------------


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
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise GraphFileError(f"{path}: not a graphc {what} (format marker is {got!r}, expected {fmt!r})")
    if doc.get("version") != version:
        raise GraphFileError(
            f"{path}: {what} version {doc.get('version')!r} is not supported; this graphc reads version {version}"
        )
    return doc


def load_graph(path):
    """Rebuild a Graph saved by save_graph; any defect raises GraphFileError."""
    path = Path(path)
    doc = read_document(path, FORMAT, VERSION, "graph file")
    try:
        arrays = _read_arrays(path, doc)
        return _build(doc, arrays)
    except GraphFileError as exc:
        raise GraphFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, GraphcError) as exc:
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise GraphFileError(f"{path}: corrupt graph file ({what})") from None


def _read_arrays(path: Path, doc: dict) -> dict[str, np.ndarray]:
    npz = path.with_name(doc["arrays"])
    try:
        data = npz.read_bytes()
    except OSError:
        raise GraphFileError(f"its arrays file {str(npz)!r} is missing or unreadable") from None
    if hashlib.sha256(data).hexdigest() != doc["arrays_sha256"]:
        raise GraphFileError(f"arrays file {str(npz)!r} does not match the graph file (checksum differs)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GraphFileError(f"arrays file {str(npz)!r} is corrupt: {exc}") from None


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def array(self, spec) -> np.ndarray:
        spec = spec["$array"]
        dtype = dtypes.to_numpy(spec["dtype"])
        if "npz" not in spec:
            return np.array(self.value(spec["value"]), dtype=dtype)
        key = spec["npz"]
        if key not in self.arrays:
            raise GraphFileError(f"array {key!r} is missing from the arrays file")
        arr = self.arrays[key]
        if arr.dtype != dtype or list(arr.shape) != list(spec["shape"]):
            raise GraphFileError(
                f"array {key!r} is {arr.dtype}{list(arr.shape)} in the arrays file, "
                f"but the graph file says {spec['dtype']}{spec['shape']}"
            )
        return arr

    def value(self, v):
        if isinstance(v, list):
            raise GraphFileError(f"untagged list {v!r} in an attribute")
        if not isinstance(v, dict):
            return v
        (tag, body), *rest = v.items()
        if rest:
            raise GraphFileError(f"bad attribute encoding {v!r}")
        if tag == "$tuple":
            return tuple(self.value(x) for x in body)
        if tag == "$array":
            return self.array(v)
        if tag == "$float":
            return float(body)
        if tag == "$slice":
            return slice(*(self.value(x) for x in body))
        if tag == "$ellipsis":
            return Ellipsis
        if tag == "$dict":
            return {self.value(k): self.value(x) for k, x in body}
        raise GraphFileError(f"unknown attribute tag {tag!r}")


def _build(doc: dict, arrays: dict):
    from graphc.ir.graph import Graph
    from graphc.ops import registry  # importing graphc.ops registers every op

    graph = Graph(str(doc["name"]), int(doc["seed"]))
    dec = _Decoder(arrays)
    late_forward = []
    for i, spec in enumerate(doc["nodes"]):
        if spec["id"] != i:
            raise GraphFileError(f"node {i} is recorded with id {spec['id']!r}")
        op = spec["op"]
        where = f"node {i} ({op})"
        if op not in registry.all_ops():
            raise GraphFileError(f"{where}: unknown op {op!r} (is the module that declares it imported?)")
        ins = []
        for j in spec["inputs"]:
            if not isinstance(j, int) or not 0 <= j < i:
                raise GraphFileError(f"{where}: input {j!r} is not an earlier node")
            ins.append(graph.nodes[j])
        attrs = Attrs({k: dec.value(v) for k, v in spec["attrs"].items()})
        shape = tuple(spec["shape"])
        if not all(isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape):
            raise GraphFileError(f"{where}: bad shape {spec['shape']!r}")
        dtype = dtypes.canonical(spec["dtype"])
        _check_type(registry.get(op), op, ins, attrs, shape, dtype, where)
        fwd, fwd_id = None, spec["forward_of"]
        if fwd_id is not None and isinstance(fwd_id, int) and 0 <= fwd_id < i:
            fwd = graph.nodes[fwd_id]
        elif fwd_id is not None:
            late_forward.append((i, fwd_id))
        node = Node(graph, i, op, ins, attrs, shape, dtype, spec["name"], spec["scope"], spec["location"], fwd)
        graph.nodes.append(node)
    for i, fwd_id in late_forward:
        # Backward flag whose forward node is later (or was outside the saved graph): link it
        # to that node, or to itself, so is_backward survives; Node is immutable otherwise.
        ok = isinstance(fwd_id, int) and 0 <= fwd_id < len(graph.nodes)
        if not ok and fwd_id != -1:
            raise GraphFileError(f"node {i}: forward_of {fwd_id!r} is not a node")
        object.__setattr__(graph.nodes[i], "forward_of", graph.nodes[fwd_id if ok else i])

    def node_at(j, what):
        if not isinstance(j, int) or not 0 <= j < len(graph.nodes):
            raise GraphFileError(f"{what} refers to node {j!r}, which does not exist")
        return graph.nodes[j]

    for name, j in doc["inputs"].items():
        n = node_at(j, f"input {name!r}")
        if n.op != "input" or n.name != name:
            raise GraphFileError(f"input {name!r} refers to node {j}, a {n.op} named {n.name!r}")
        graph.inputs[name] = n
    for name, p in doc["params"].items():
        n = node_at(p["id"], f"parameter {name!r}")
        if n.op != "param" or n.name != name:
            raise GraphFileError(f"parameter {name!r} refers to node {p['id']}, a {n.op} named {n.name!r}")
        value = dec.array(p["value"])
        if value.shape != n.shape or value.dtype != dtypes.to_numpy(n.dtype):
            raise GraphFileError(
                f"parameter {name!r}: stored value is {value.dtype}{list(value.shape)}, declared {n.type_str}"
            )
        graph.params[name] = n
        graph.values[name] = np.array(value, order="C")  # writable: updates store into it
    for name, j in doc["outputs"].items():
        graph.outputs[name] = node_at(j, f"output {name!r}")
    for var, j in doc["updates"].items():
        if var not in graph.params:
            raise GraphFileError(f"update of {var!r}: no such parameter")
        n, p = node_at(j, f"update of {var!r}"), graph.params[var]
        if n.shape != p.shape or n.dtype != p.dtype:
            raise GraphFileError(f"update of {var!r}: new value is {n.type_str} but the variable is {p.type_str}")
        graph.updates[var] = n
    graph._scope_counts.update({str(k): int(v) for k, v in doc.get("scope_counts", {}).items()})
    return graph


def _check_type(opdef, op, ins, attrs, shape, dtype, where):
    """Re-run the op's inference and compare with the recorded type."""
    if op == "const":
        v = attrs["value"]
        if tuple(v.shape) != shape or v.dtype != dtypes.to_numpy(dtype):
            raise GraphFileError(f"{where}: constant value is {v.dtype}{list(v.shape)}, recorded {dtype}{list(shape)}")
        return
    if op in ("param", "input"):
        missing = [k for k in (("name", "init", "trainable") if op == "param" else ("name",)) if k not in attrs]
        if missing or ins:
            raise GraphFileError(f"{where}: malformed {op} (missing attributes {missing}, {len(ins)} inputs)")
        return
    try:
        got_shape, got_dtype = opdef.infer(list(ins), attrs)
    except Exception as exc:  # a corrupt attribute may fail inside infer in any way
        raise GraphFileError(f"{where}: does not type-check: {type(exc).__name__}: {exc}") from None
    if tuple(got_shape) != shape or got_dtype != dtype:
        raise GraphFileError(
            f"{where}: recorded type {dtype}{list(shape)} but its inputs give {got_dtype}{list(got_shape)}"
        )
