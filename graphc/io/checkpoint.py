"""Checkpoints: the graph, every parameter and state value, and where training stood.

A checkpoint is a directory:

    ckpt/checkpoint.json         the manifest (format, values index, metadata, file names)
    ckpt/values-<tag>.npz        parameters, optimizer state, running statistics (no pickles)
    ckpt/graph-<tag>.json (+ its .npz)  the whole graph (training step and evaluation), via graph_file

Saving writes the new data files under names no other save uses (<tag> is the writer tag of
graphc.io.atomic), then replaces the manifest atomically (temporary file + os.replace): the
manifest is the commit point. A crash at any moment before that leaves the previous manifest
pointing at the previous, untouched files. After the commit the previous files are removed,
and so is whatever killed saves left behind.
"""

import contextlib
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphc.errors import GraphFileError
from graphc.io import atomic
from graphc.io.atomic import atomic_write
from graphc.io.graph_file import EncodedGraph, arrays_file, encode_graph, load_graph, read_document, write_graph
from graphc.io.graph_reader import is_a, non_finite, show

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
    """Save `graph.values` (and the graph itself) with JSON-able `meta` into directory `path`.

    Missing folders are created. A failure raises FileWriteError naming `path` and leaves the
    previous checkpoint as it was; so does a kill at any moment (the next save tidies up).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise GraphFileError(f"checkpoint path {str(path)!r} exists and is not a directory")
    names = sorted(graph.values)
    for name in names:
        if non_finite(np.asarray(graph.values[name])):  # load_checkpoint would refuse it
            bad = non_finite(np.asarray(graph.values[name]))
            raise GraphFileError(f"graph {graph.name!r}: cannot save value {name!r} in a checkpoint: it contains {bad}")
    arrays = {f"v{i}": np.asarray(graph.values[n]) for i, n in enumerate(names)}  # not ascontiguousarray: 0-d stays 0-d
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "graph_name": graph.name,
        "values_file": None,
        "values_sha256": hashlib.sha256(data).hexdigest(),
        "values": {
            n: {"key": f"v{i}", "shape": list(graph.values[n].shape), "dtype": graph.values[n].dtype.name}
            for i, n in enumerate(names)
        },
        "graph_file": None,
        "meta": meta or {},
    }
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GraphFileError(f"checkpoint metadata is not JSON-serialisable: {exc}") from None
    encoded = encode_graph(graph) if include_graph else None  # refusals (NaN values...) before any write
    try:
        with atomic.exclusive(path), atomic.writing() as tag:
            _write(path, encoded, manifest, data, tag)
    except OSError as exc:
        raise atomic.write_error("checkpoint", path, exc) from None
    return path


def _write(path: Path, encoded: EncodedGraph | None, manifest: dict, data: bytes, tag: str) -> None:
    atomic.make_folder(path)
    previous = _files_named(path)
    manifest["values_file"] = f"values-{tag}.npz"
    written = [path / manifest["values_file"]]
    try:
        atomic.write_new(written[0], data)
        if encoded is not None:
            manifest["graph_file"] = f"graph-{tag}.json"
            written.append(path / manifest["graph_file"])
            written.append(write_graph(encoded, written[-1], tag))
        text = json.dumps(manifest, indent=1, allow_nan=False)
        atomic_write(path / MANIFEST, (text + "\n").encode(), tag)  # the commit point
    except BaseException:
        for f in written:  # the old manifest still points at the old files
            with contextlib.suppress(OSError):
                f.unlink()
        raise
    # Committed. The previous checkpoint's files go now; what killed saves left goes once their
    # writer is finished (graphc.io.atomic), so a concurrent save's new files are never touched.
    current = _files_named(path)
    for name in previous - current:
        if any(p.fullmatch(name) for p in LEFTOVERS):
            with contextlib.suppress(OSError):
                (path / name).unlink()
    for pattern in LEFTOVERS:
        atomic.remove_stale(path, pattern, keep=current)


# What saves write into a checkpoint folder besides the manifest (group `tag`: the writer tag).
# The untagged names are those of graphc before writer tags; they are judged by age.
_T, _OLD = atomic.TAG, atomic.OLD_TMP
LEFTOVERS = [
    re.compile(rf"values-(?P<tag>{_T})\.npz"),
    re.compile(rf"graph-(?P<tag>{_T})\.json(?:\.(?P=tag)\.npz)?"),
    re.compile(rf"\.(?:checkpoint\.json|graph-{_T}\.json)\.(?P<tag>{_T})\.tmp"),
    re.compile(r"(?:values-[0-9a-f]{12}\.npz|graph-[0-9a-f]{12}\.(?:json|npz))"),
    re.compile(rf"\.(?:checkpoint\.json|values-[0-9a-f]{{12}}\.npz|graph-[0-9a-f]{{12}}\.(?:json|npz))\.{_OLD}\.tmp"),
]


def _files_named(path: Path) -> set[str]:
    """The names of the files the checkpoint's manifest refers to (none if it cannot be read)."""
    try:
        doc = json.loads((path / MANIFEST).read_bytes())
        names = {doc["values_file"]}
        if doc.get("graph_file"):
            names.add(doc["graph_file"])
            arrays = arrays_file(path / doc["graph_file"])
            if arrays is not None:
                names.add(arrays.name)
        return {n for n in names if isinstance(n, str)}
    except (OSError, ValueError, RecursionError, TypeError, KeyError, AttributeError):
        return set()


def read_manifest(path) -> dict:
    """The checkpoint manifest at `path`; GraphFileError if missing, corrupt or foreign."""
    path = Path(path)
    mf = path / MANIFEST if path.is_dir() else path
    doc = read_document(mf, FORMAT, VERSION, "checkpoint", "checkpoint manifest")
    problem = _manifest_problem(doc)
    if problem:
        raise GraphFileError(f"{mf}: corrupt checkpoint manifest ({problem})")
    return doc


def _manifest_problem(doc: dict) -> str | None:
    """What is wrong with the manifest's fields (exact JSON types: true is not an integer), or None."""
    training = doc.get("meta", {}).get("training", {}) if isinstance(doc.get("meta"), dict) else {}
    history = training.get("history", {}) if isinstance(training, dict) else {}
    fields = [  # (field, the object holding it, required, check, what is expected)
        ("values_file", doc, True, _text, "a string"),
        ("values_sha256", doc, True, _text, "a string"),
        (
            "values",
            doc,
            True,
            lambda v: isinstance(v, dict) and all(map(_value_spec, v.values())),
            "an object of {key, shape, dtype} by value name",
        ),
        ("graph_file", doc, False, _optional(_text), "a string or null"),
        ("meta", doc, True, lambda v: isinstance(v, dict), "an object"),
        ("meta.training", doc.get("meta"), False, lambda v: isinstance(v, dict), "an object"),
        ("meta.training.epoch", training, False, _count, "a non-negative integer"),
        ("meta.training.step", training, False, _count, "a non-negative integer"),
        ("meta.training.history", training, False, lambda v: isinstance(v, dict), "an object"),
        (
            "meta.training.history.epochs",
            history,
            False,
            lambda v: isinstance(v, list) and all(map(_int, v)),
            "a list of integers",
        ),
        ("meta.training.history.history", history, False, _columns, "lists of numbers (or null) by metric"),
        ("meta.training.history.best_epoch", history, False, _optional(_int), "an integer or null"),
        ("meta.training.history.stop_reason", history, False, _optional(_text), "a string or null"),
    ]
    for name, obj, required, check, expected in fields:
        key = name.rsplit(".", 1)[-1]
        if not isinstance(obj, dict) or key not in obj:
            if required:
                return f"{name} is missing"
        elif not check(obj[key]):
            return f"{name} is {show(obj[key])}, expected {expected}"
    return None


def _int(v) -> bool:
    return is_a(v, int)


def _count(v) -> bool:
    return is_a(v, int) and v >= 0


def _text(v) -> bool:
    return isinstance(v, str)


def _optional(check):
    return lambda v: v is None or check(v)


def _value_spec(spec) -> bool:
    return (
        isinstance(spec, dict)
        and _text(spec.get("key"))
        and _text(spec.get("dtype"))
        and isinstance(spec.get("shape"), list)
        and all(map(_count, spec["shape"]))
    )


def _columns(v) -> bool:
    return isinstance(v, dict) and all(
        isinstance(col, list) and all(x is None or is_a(x, int | float) for x in col) for col in v.values()
    )


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint directory; any defect raises GraphFileError naming the file."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for attempt in range(3):
        doc = read_manifest(path)
        vf = folder / Path(doc["values_file"]).name
        try:
            data = vf.read_bytes()
            break
        except OSError:
            named = _files_named(folder)
            if attempt < 2 and named and vf.name not in named:
                continue  # a save replaced the checkpoint (and removed these files) while we read it
            raise GraphFileError(
                f"checkpoint {str(path)!r}: values file {vf.name!r} is missing or unreadable"
            ) from None
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
        if non_finite(arr):
            raise GraphFileError(f"checkpoint {str(path)!r}: value {name!r} contains {non_finite(arr)}")
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
