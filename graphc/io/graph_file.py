"""The graph file: JSON for the structure, a sidecar .npz for arrays. No pickles.

    {"format": "graphc.graph", "version": 2, "name": ..., "seed": ..., "arrays": "g.json.<tag>.npz",
     "arrays_sha256": ..., "nodes": [{"id", "op", "inputs", "attrs", "shape", "dtype", "name",
     "scope", "location", "phase", "grad_of"}, ...], "inputs": {name: id}, "params": {name: {"id",
     "init", "trainable", "value"}}, "outputs": {name: id}, "updates": {var: id}}

A node with several outputs has "types": [[shape, dtype], ...] instead of "shape" and "dtype";
"phase" is "forward", "backward" or "update", "grad_of" the label a backward node differentiates.
Version 1 files (a "forward_of" node id instead of "phase" and "grad_of") still load.

Attribute values are encoded as JSON with tagged objects for what JSON lacks: tuples are
{"$tuple": [...]}, arrays {"$array": ...} (0-d inline, others by key in the .npz), non-finite
floats {"$float": "nan"}, slices, Ellipsis, dicts, and sub-graphs {"$subgraph": {"name", "nodes":
[...], "inputs": [...], "captured": [...], "outputs": [...]}} (nodes as above, numbered within
the body; its constants' arrays go to the same .npz).

Saving has one commit point, the rename of the JSON. The arrays go first to a new file whose
name no other save uses (`<json name>.<writer tag>.npz`, see graphc.io.atomic); the JSON that
names it (with its SHA-256) then replaces the old JSON atomically; only after that is the old
arrays file removed. A save killed at any moment leaves the old JSON naming the old arrays, or
the new JSON naming the new ones; what it leaves behind is removed by a later save. Loading
checks every field's type and refuses anything else with a GraphFileError naming the file and
the field (graphc.io.graph_reader).
"""

import contextlib
import hashlib
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.errors import GraphFileError
from graphc.io import atomic
from graphc.io.atomic import atomic_write
from graphc.io.graph_reader import (
    FORMAT,
    READS,
    VERSION,
    field,
    non_finite,
    read_arrays_name,
    read_document,
    read_graph,
)
from graphc.ir.subgraph import SubGraph


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
        if isinstance(v, SubGraph):
            return {"$subgraph": self.body(v, where)}
        raise GraphFileError(f"cannot save {where} value {v!r} of type {type(v).__name__}")

    def nodes(self, nodes, index: dict) -> list[dict]:
        """The JSON of `nodes` (a graph's, or a body's), numbered by `index` (id(node) -> position)."""
        out = []
        for i, n in enumerate(nodes):
            spec = {
                "id": i,
                "op": n.op,
                "inputs": [_ref(index, x, n) for x in n.inputs],
                "attrs": {k: self.value(v, f"{n.label}.{k}") for k, v in n.attrs.items()},
            }
            if n.is_tuple:
                spec["types"] = [[list(shape), dtype] for shape, dtype in n.types]
            else:
                spec.update(shape=list(n.shape), dtype=n.dtype)
            spec.update(name=n.name, scope=n.scope, location=n.location, phase=n.phase.value, grad_of=n.grad_of)
            out.append(spec)
        return out

    def body(self, sub: SubGraph, where: str) -> dict:
        nodes = sub.nodes
        index = {id(n): i for i, n in enumerate(nodes)}
        return {
            "name": sub.graph.name,
            "nodes": self.nodes(nodes, index),
            "inputs": [index[id(n)] for n in sub.inputs],
            "captured": [index[id(n)] for n in sub.captured],
            "outputs": [index[id(n)] for n in sub.outputs],
        }


def graph_to_dict(graph) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-able description, arrays for the .npz) of a graph."""
    enc = _Encoder()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    for i, n in enumerate(graph.nodes):
        if n.id != i:
            raise GraphFileError(f"graph {graph.name!r}: node {n.label} has id {n.id} at position {i}")
    nodes = enc.nodes(graph.nodes, index)
    params = {}
    for name, p in graph.params.items():
        value = graph.values.get(name)
        if value is None:
            raise GraphFileError(f"graph {graph.name!r}: parameter {name!r} has no value")
        value = np.asarray(value)
        if non_finite(value):  # load_graph would refuse it
            raise GraphFileError(
                f"graph {graph.name!r}: cannot save parameter {name!r}: its value contains {non_finite(value)}"
            )
        params[name] = {
            "id": index[id(p)],
            "init": p.attrs["init"],
            "trainable": p.attrs["trainable"],
            "value": enc.array(value, inline_scalar=False),
        }
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "name": str(graph.name),
        "seed": graph.seed,
        "nodes": nodes,
        "inputs": {k: index[id(v)] for k, v in graph.inputs.items()},
        "params": params,
        "outputs": {k: index[id(v)] for k, v in graph.outputs.items()},
        "updates": {k: index[id(v)] for k, v in graph.updates.items()},
        "scope_counts": dict(getattr(graph, "_scope_counts", {})),
    }
    return doc, enc.arrays


def _ref(index, x, n):
    if id(x) not in index:
        raise GraphFileError(f"node {n.label} reads {x.label}, which is not in the graph")
    return index[id(x)]


def save_graph(graph, path) -> Path:
    """Write `graph` to `path` (JSON) and its arrays beside it (.npz); returns `path`.

    Missing folders are created. The JSON's atomic rename commits the save: if anything fails
    (FileWriteError, naming `path`) or the process is killed, the previous files are intact.
    A path that is a folder is refused before anything is written.
    """
    path = Path(path)
    encoded = encode_graph(graph)
    try:
        with atomic.exclusive(path):
            write_graph(encoded, path)
    except OSError as exc:
        raise atomic.write_error("graph file", path, exc) from None
    return path


@dataclass
class EncodedGraph:
    """A graph ready to write: its document (less the arrays file's name) and the .npz bytes."""

    doc: dict
    npz: bytes


def encode_graph(graph) -> EncodedGraph:
    """Encode `graph`; this is where everything that cannot be saved is refused, before any write."""
    doc, arrays = graph_to_dict(graph)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return EncodedGraph(doc, buf.getvalue())


def write_graph(encoded: EncodedGraph, path: Path, tag: str | None = None) -> Path:
    """save_graph's writing, raising plain OSError; returns the arrays file it wrote.

    `tag`: the writer tag of an enclosing save (a checkpoint's), else a fresh one.
    """
    if path.is_dir():
        raise GraphFileError(f"cannot save a graph to {str(path)!r}: it is a folder (give a file name, e.g. g.json)")
    with contextlib.ExitStack() as stack:
        tag = tag or stack.enter_context(atomic.writing())
        npz = path.with_name(f"{path.name}.{tag}.npz")
        doc = {**encoded.doc, "arrays": npz.name, "arrays_sha256": hashlib.sha256(encoded.npz).hexdigest()}
        # One node per line: the file stays readable and diffs well.
        nodes = ",\n  ".join(json.dumps(n, allow_nan=False) for n in doc.pop("nodes"))
        text = json.dumps(doc, indent=1, allow_nan=False)[:-2] + f',\n "nodes": [\n  {nodes}\n ]\n}}\n'

        atomic.make_folder(path.parent)
        previous = arrays_file(path)
        atomic.write_new(npz, encoded.npz, atomic.mode_of(previous) if previous else atomic.mode_of(path))
        try:
            atomic_write(path, text.encode(), tag)  # the commit point
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(npz)
            raise
        remove_leftovers(path, previous, written=npz)
    return npz


def arrays_file(path: Path) -> Path | None:
    """The arrays file that the graph file at `path` names, or None (no file, or not readable)."""
    try:
        doc = json.loads(path.read_bytes())
        return path.with_name(read_arrays_name(doc))
    except (OSError, ValueError, RecursionError, AttributeError, GraphFileError):
        return None


def leftover_patterns(name: str) -> list[re.Pattern]:
    """What saves of the graph file `name` write besides it: its arrays files and temporary files,
    and (last) the temporary names of graphc before writer tags, which are judged by age only."""
    n, old_npz = re.escape(name), re.escape(_old_arrays_name(name))
    return [
        re.compile(rf"{n}\.(?P<tag>{atomic.TAG})\.npz"),
        re.compile(rf"\.{n}\.(?P<tag>{atomic.TAG})\.tmp"),
        re.compile(rf"\.(?:{n}|{old_npz})\.{atomic.OLD_TMP}\.tmp"),
    ]


def _old_arrays_name(name: str) -> str:
    """The arrays file's name before writer tags: g.json -> g.npz, anything else + .npz."""
    return name[:-5] + ".npz" if name.endswith(".json") else name + ".npz"


def remove_leftovers(path: Path, previous: Path | None, written: Path | None = None) -> None:
    """After a committed save of `path`: remove the arrays file it replaced (`previous`), and the
    one it wrote if a concurrent save has committed since (either only if it is one of ours and
    named by nothing now), then what finished or killed saves of `path` left (graphc.io.atomic)."""
    named = arrays_file(path) or written  # what the graph file names now: kept
    patterns = leftover_patterns(path.name)
    for old in (previous, written):
        if (
            old is not None
            and old != named
            and (old.name == _old_arrays_name(path.name) or patterns[0].fullmatch(old.name))
        ):
            with contextlib.suppress(OSError):
                os.unlink(old)
    for pattern in patterns:
        atomic.remove_stale(path.parent, pattern, keep={named.name} if named else ())


def load_graph(path):
    """Rebuild a Graph saved by save_graph; any defect raises GraphFileError naming the file."""
    path = Path(path)
    for attempt in range(3):
        doc = read_document(path, FORMAT, READS, "graph file")
        try:
            npz = path.with_name(read_arrays_name(doc))
            try:
                data = npz.read_bytes()
            except OSError:
                if attempt < 2 and arrays_file(path) not in (None, npz):
                    continue  # a save replaced the graph file (and its arrays) while we read it
                raise GraphFileError(f"its arrays file {str(npz)!r} is missing or unreadable") from None
            return read_graph(doc, _read_arrays(npz, data, doc))
        except GraphFileError as exc:
            raise GraphFileError(f"{path}: {exc}") from None
    raise AssertionError("unreachable")


def _read_arrays(npz: Path, data: bytes, doc: dict) -> dict[str, np.ndarray]:
    if hashlib.sha256(data).hexdigest() != field(doc, "arrays_sha256", str):
        raise GraphFileError(f"arrays file {str(npz)!r} does not match the graph file (checksum differs)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GraphFileError(f"arrays file {str(npz)!r} is corrupt: {exc}") from None
