"""ONNX tensors, types and attributes as graphc's dtypes, NumPy arrays and Python values."""

import re

import numpy as np
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from graphc.onnx.importer_registry import Unsupported

# ONNX element types graphc has; every other one is reported by name.
DTYPES = {
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.BOOL: "bool",
}


def type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"element type {elem_type}"


def dtype_of(elem_type: int, what: str) -> str:
    """graphc's dtype for an ONNX element type, or Unsupported naming it and `what` has it."""
    if elem_type not in DTYPES:
        raise Unsupported(f"{what} has dtype {type_name(elem_type)}; graphc has {', '.join(DTYPES.values())}")
    return DTYPES[elem_type]


def elem_type_of(dtype: str) -> int:
    return {v: k for k, v in DTYPES.items()}[dtype]


def tensor_array(t: TensorProto, what: str) -> np.ndarray:
    """A TensorProto's value as an array of a graphc dtype."""
    dtype = dtype_of(t.data_type, what)
    return np.array(numpy_helper.to_array(t), dtype=dtype, order="C")


def attribute(attr: AttributeProto, what: str):
    """An attribute's value: ints, floats and strings as Python values, lists as tuples, tensors as
    arrays, graphs as GraphProto."""
    if attr.type == AttributeProto.SPARSE_TENSOR or attr.type == AttributeProto.SPARSE_TENSORS:
        raise Unsupported(f"attribute {attr.name!r} is a sparse tensor")
    if attr.type == AttributeProto.TENSOR:
        return tensor_array(attr.t, f"attribute {attr.name!r} of {what}")
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value)
    return value


def dim_name(name: str) -> str:
    """An ONNX dim_param as a graphc symbolic dimension (an identifier)."""
    out = re.sub(r"\W", "_", name.strip()) or "dim"
    return out if out[0].isalpha() or out[0] == "_" else f"d_{out}"
