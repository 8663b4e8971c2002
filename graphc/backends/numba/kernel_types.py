"""The types of graphc's own kernel compiler (kernel_ir.py), with Numba's typing rules.

Scalars are "b" (bool), "i32", "i64", "u64", "f32", "f64"; arrays are ArrayType. The rules
are Numba's, as measured on its typing (numba 0.68): integer arithmetic computes in int64
(uint64 only when both sides are uint64), float32 meets an int in float64 and a bool in
float32, `/` of ints gives float64, bitwise operators keep bool on bools.
"""

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

__all__ = ["Unsupported", "ArrayType", "LL", "MEM", "arg_types", "kind", "promote", "unify", "cast", "ITEMSIZE"]


class Unsupported(Exception):
    """The kernel uses something graphc's compiler does not translate (Numba compiles it instead)."""


LL = {"b": ir.IntType(1), "i8": ir.IntType(8), "i32": ir.IntType(32), "i64": ir.IntType(64), "u64": ir.IntType(64)}
LL.update(f32=ir.FloatType(), f64=ir.DoubleType())
MEM = {"b": LL["i8"]}  # how a scalar is stored in an array, where it differs
ITEMSIZE = {"b": 1, "i32": 4, "i64": 8, "u64": 8, "f32": 4, "f64": 8}
_DTYPES = {"bool": "b", "int32": "i32", "int64": "i64", "uint64": "u64", "float32": "f32", "float64": "f64"}


@dataclass(frozen=True)
class ArrayType:
    dtype: str
    ndim: int
    contiguous: bool  # C order: addressed from the shape, as Numba does for layout 'C'
    writeable: bool


def arg_types(args) -> list:
    """The type of each argument (an ndarray, or a Python int, bool or float); Unsupported otherwise."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            dt = _DTYPES.get(a.dtype.name)
            if dt is None or not a.dtype.isnative or not a.flags.aligned:
                raise Unsupported(f"array of {a.dtype}")
            out.append(ArrayType(dt, a.ndim, a.flags.c_contiguous, a.flags.writeable))
        elif isinstance(a, (bool, np.bool_)):
            out.append("b")
        elif isinstance(a, int) and -(1 << 63) <= a < (1 << 63):
            out.append("i64")
        elif isinstance(a, float):
            out.append("f64")
        else:
            raise Unsupported(f"argument of type {type(a).__name__}")
    return out


def kind(t) -> int:
    """0 bool, 1 integer, 2 float; Unsupported for an array."""
    if not isinstance(t, str):
        raise Unsupported("an array where a scalar is needed")
    return 0 if t == "b" else 1 if t[0] in "iu" else 2


def promote(a: str, b: str) -> str:
    """The type of `a op b` for + - * (Numba's scalar rules)."""
    ka, kb = kind(a), kind(b)
    if ka == 2 or kb == 2:
        if ka == 2 and kb == 2:
            return "f64" if "f64" in (a, b) else "f32"
        f, other = (a, b) if ka == 2 else (b, a)
        return f if other == "b" else "f64"
    return "u64" if a == b == "u64" else "i64"


def unify(a: str, b: str) -> str:
    """The type of a variable (or max/min, a selection) holding values of types a and b."""
    if a == b:
        return a
    if "u64" in (a, b) and kind(a) != 2 and kind(b) != 2:
        raise Unsupported("a value that is uint64 and signed")
    return promote(a, b)


def cast(B: ir.IRBuilder, v, src: str, dst: str):
    """Value v of type src as type dst (Numba's conversions: truncation toward zero, wrapping)."""
    if src == dst:
        return v
    ks, kd = kind(src), kind(dst)
    if kd == 0:
        if ks == 2:
            return B.fcmp_unordered("!=", v, ir.Constant(LL[src], 0.0))
        return B.icmp_unsigned("!=", v, ir.Constant(LL[src], 0))
    if ks == 0:
        return B.zext(v, LL[dst]) if kd == 1 else B.uitofp(v, LL[dst])
    if ks == 1 and kd == 1:
        ws, wd = LL[src].width, LL[dst].width
        if ws == wd:
            return v
        return (B.zext(v, LL[dst]) if src == "u64" else B.sext(v, LL[dst])) if ws < wd else B.trunc(v, LL[dst])
    if ks == 1:
        return B.uitofp(v, LL[dst]) if src == "u64" else B.sitofp(v, LL[dst])
    if kd == 1:
        return B.fptoui(v, LL[dst]) if dst == "u64" else B.fptosi(v, LL[dst])
    return B.fpext(v, LL[dst]) if src == "f32" else B.fptrunc(v, LL[dst])
