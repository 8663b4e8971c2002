"""Checkpoints: the graph, every parameter and state value, and where training stood.

A checkpoint is a directory:

    ckpt/checkpoint.json         the manifest (format, values index, metadata, file names)
    ckpt/values-<token>.npz      parameters, optimizer state, running statistics (no pickles)
    ckpt/graph-<token>.json/.npz the whole graph (training step and evaluation), via graph_file

Saving writes the new data files under fresh names first, then replaces the manifest
atomically (temporary file + os.replace); the manifest is the commit point. A crash at any
moment before that leaves the previous manifest pointing at the previous, untouched files.
Files no longer referenced are removed after the commit.
"""

import contextlib
import hashlib
import io
import json
import secrets
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.errors import GraphFileError
from graphc.io.graph_file import atomic_write, load_graph, read_document, save_graph

FORMAT = "graphc.checkpoint"
VERSION = 1
MANIFEST = "checkpoint.json"


@dataclass
class Checkpoint:
    """What load_checkpoint read: the manifest's metadata and the values by name."""

    path: Path
    meta: dict
    values: dict[str, np.ndarray]
    graph_file: Path | None

    def graph(self):
        """The saved graph (with the checkpoint's values), or GraphFileError if none was saved."""
        if self.graph_file is None:
            raise GraphFileError(f"checkpoint {str(self.path)!r} holds no graph; pass the network to rebuild it")
        graph = load_graph(self.graph_file)
        restore_values(graph, self.values, self.path)
        return graph


def save_checkpoint(path, graph, meta: dict | None = None, include_graph: bool = True) -> Path:
    """Save `graph.values` (and the graph itself) with JSON-able `meta` into directory `path`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GraphFileError(f"checkpoint path {str(path)!r} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    names = sorted(graph.values)
    arrays = {f"v{i}": np.asarray(graph.values[n]) for i, n in enumerate(names)}  # not ascontiguousarray: 0-d stays 0-d
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    values_file = f"values-{token}.npz"
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "graph_name": graph.name,
        "values_file": values_file,
        "values_sha256": hashlib.sha256(data).hexdigest(),
        "values": {
            n: {"key": f"v{i}", "shape": list(graph.values[n].shape), "dtype": graph.values[n].dtype.name}
            for i, n in enumerate(names)
        },
        "graph_file": None,
        "meta": meta or {},
    }
    try:
        text = json.dumps(manifest, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GraphFileError(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    written = [path / values_file]
    try:
        atomic_write(path / values_file, data)
        if include_graph:
            graph_file = f"graph-{token}.json"
            written += [path / graph_file, path / f"graph-{token}.npz"]
            save_graph(graph, path / graph_file)
            manifest["graph_file"] = graph_file
            text = json.dumps(manifest, indent=1, allow_nan=False)
        atomic_write(path / MANIFEST, (text + "\n").encode())
    except BaseException:
        for f in written:  # the old manifest still points at the old files
            with contextlib.suppress(OSError):
                f.unlink()
        raise
    keep = {MANIFEST, *(f.name for f in written)}
    for f in path.iterdir():
        if f.name not in keep and (f.name.startswith(("values-", "graph-")) or f.name.startswith(f".{MANIFEST}.")):
            with contextlib.suppress(OSError):
                f.unlink()
    return path


def read_manifest(path) -> dict:
    """The checkpoint manifest at `path`; GraphFileError if missing, corrupt or foreign."""
    path = Path(path)
    mf = path / MANIFEST if path.is_dir() else path
    doc = read_document(mf, FORMAT, VERSION, "checkpoint", "checkpoint manifest")
    for key, typ in (("values_file", str), ("values_sha256", str), ("values", dict), ("meta", dict)):
        if not isinstance(doc.get(key), typ):
            raise GraphFileError(f"{mf}: corrupt checkpoint manifest ({key!r} missing or not a {typ.__name__})")
    return doc


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint directory; any defect raises GraphFileError naming the file."""
    path = Path(path)
    doc = read_manifest(path)
    folder = path if path.is_dir() else path.parent
    vf = folder / Path(doc["values_file"]).name
    try:
        data = vf.read_bytes()
    except OSError:
        raise GraphFileError(f"checkpoint {str(path)!r}: values file {vf.name!r} is missing or unreadable") from None
    if hashlib.sha256(data).hexdigest() != doc["values_sha256"]:
        raise GraphFileError(f"checkpoint {str(path)!r}: values file {vf.name!r} is corrupt (checksum differs)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GraphFileError(f"checkpoint {str(path)!r}: values file {vf.name!r} is corrupt: {exc}") from None
    values = {}
    for name, spec in doc["values"].items():
        arr = stored.get(spec.get("key")) if isinstance(spec, dict) else None
        if arr is None or list(arr.shape) != list(spec.get("shape", ())) or arr.dtype.name != spec.get("dtype"):
            raise GraphFileError(
                f"checkpoint {str(path)!r}: value {name!r} is missing or differs from its manifest entry"
            )
        values[name] = arr
    gf = doc.get("graph_file")
    return Checkpoint(path, doc["meta"], values, folder / Path(gf).name if gf else None)


def restore_values(graph, values: dict, source="checkpoint") -> None:
    """Copy `values` into `graph.values` in place, after checking that they match exactly.

    Every mismatch is listed in one GraphFileError: values the graph has and the checkpoint
    lacks, values the checkpoint has and the graph lacks, and different shapes or dtypes.
    """
    problems = []
    missing = sorted(set(graph.values) - set(values))
    extra = sorted(set(values) - set(graph.values))
    if missing:
        problems.append(f"missing from the checkpoint: {', '.join(map(repr, missing))}")
    if extra:
        problems.append(f"in the checkpoint but not in the model: {', '.join(map(repr, extra))}")
    for name in sorted(set(values) & set(graph.values)):
        have, got = graph.values[name], values[name]
        if have.shape != got.shape or have.dtype != got.dtype:
            problems.append(
                f"{name!r} is {got.dtype.name}{list(got.shape)} in the checkpoint "
                f"but {have.dtype.name}{list(have.shape)} in the model"
            )
    if problems:
        raise GraphFileError(f"{source} does not match graph {graph.name!r}:\n  " + "\n  ".join(problems))
    for name, arr in values.items():
        np.copyto(graph.values[name], arr)
