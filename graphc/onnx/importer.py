"""ONNX import: `load(path_or_model)` reads an ONNX model into a graphc Graph.

Each ONNX node is imported by the rule its op type has in the model's opset (the table in
importer_registry, filled by the import_rules_* modules); initializers of float types become
parameters, integer ones (shapes, axes, indices) values known at import, and shape computations
(Shape -> Gather -> Concat -> Reshape) are folded while importing. Node names become scopes.
"""

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import ModelProto

from graphc.errors import GraphFileError
from graphc.ir.graph import Graph
from graphc.onnx import importer_table  # noqa: F401  (imports every rule family: the table is complete)
from graphc.onnx.importer_graph import GraphBuilder

OLDEST_OPSET = 7  # the oldest opset the rules are written and tested for


def newest_opset() -> int:
    """The newest opset of the default domain that the installed onnx package knows (and graphc imports)."""
    return onnx.defs.onnx_opset_version()


def load(path_or_model, trainable=True, input_values: dict | None = None, name: str | None = None) -> Graph:
    """Import an ONNX model (a file path, or an onnx.ModelProto) as a graphc Graph.

    trainable: True (every float initializer is a trainable parameter), False (parameters that
    training leaves alone) or a set of initializer names (those train, the others are frozen).
    input_values: graph inputs fixed to these arrays at import (they fold like initializers);
    for models whose shapes, axes or pads are graph inputs.
    The graph's inputs and outputs keep the model's names; symbolic dimensions (dim_param) keep
    theirs. Raises GraphFileError for a file that is not ONNX, is truncated or corrupt, misses
    its external data or has an opset newer than onnx knows, and UnsupportedModelError listing
    every node graphc cannot import.
    """
    model, source, base_dir = _read(path_or_model)
    opset = _opset(model, source)
    default = Path(source.strip("'")).stem if isinstance(path_or_model, str | os.PathLike) else "onnx_model"
    graph_name = name or model.graph.name or default
    return GraphBuilder(model.graph, opset, source, trainable, input_values, graph_name).build()


def _read(path_or_model) -> tuple[ModelProto, str, str | None]:
    if isinstance(path_or_model, ModelProto):
        _check_model(path_or_model, "the model")
        return path_or_model, "the model", None
    if not isinstance(path_or_model, str | os.PathLike):
        raise GraphFileError(
            f"onnx.load: expected a file path or an onnx.ModelProto, got {type(path_or_model).__name__}"
        )
    path = Path(path_or_model)
    source = repr(str(path))
    if not path.exists():
        raise GraphFileError(f"no such ONNX file {source}")
    if path.is_dir():
        raise GraphFileError(f"{source} is a folder, not an ONNX file")
    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise GraphFileError(f"{source} is not an ONNX model, or it is truncated or corrupt ({exc})") from None
    _check_model(model, source)
    _load_external(model, path, source)
    return model, source, str(path.parent)


def _check_model(model: ModelProto, source: str) -> None:
    # Protobuf parses many byte strings as a message; a model has an IR version and a graph.
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise GraphFileError(f"{source} is not an ONNX model (no IR version or no graph), or it is truncated")


def _load_external(model: ModelProto, path: Path, source: str) -> None:
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    tensors = [t for t in model.graph.initializer if uses_external_data(t)]
    if not tensors:
        return
    for t in tensors:
        info = ExternalDataInfo(t)
        target = path.parent / info.location
        if not target.is_file():
            raise GraphFileError(
                f"{source}: initializer {t.name!r} is stored in the external data file {str(target)!r}, "
                f"which is missing"
            )
        size = target.stat().st_size
        end = (info.offset or 0) + (info.length or 0)
        if end > size:
            raise GraphFileError(
                f"{source}: initializer {t.name!r} needs bytes up to {end} of {str(target)!r}, which has {size}: "
                f"the external data file is truncated"
            )
    try:
        load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise GraphFileError(f"{source}: cannot read its external data: {exc}") from None


def _opset(model: ModelProto, source: str) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        if model.opset_import:
            domains = ", ".join(repr(o.domain) for o in model.opset_import)
            raise GraphFileError(f"{source} imports no opset of the default ONNX domain (only {domains})")
        return 1  # IR version 1 models name no opset: opset 1
    opset = max(versions)
    if opset > newest_opset():
        raise GraphFileError(
            f"{source} uses opset {opset}, newer than the newest this onnx package knows "
            f"({newest_opset()}, onnx {onnx.__version__}); graphc imports opsets {OLDEST_OPSET} to {newest_opset()}"
        )
    return opset
