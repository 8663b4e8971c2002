"""Python source for fused Numba loop kernels, generated from a kernel group's op templates
(the backend-neutral loop facts, LoopSpec and ReduceSpec, are in graphc.backends.loopgen).

The source is a pure function of the group: its ops, attributes (through the scalar
templates and inlined scalar constants), dtypes and the *pattern* of its shapes (loop rank,
which dims of each input broadcast, which dims reduce). Sizes are arguments, so one compiled
kernel serves every batch size and every layer with the same pattern.

Floating point: kernels use fastmath={'contract'} only (fused multiply-add: each result is
at least as accurate, and NaN/inf behave as without it). 'nnan'/'ninf' would break NaN
propagation and the overflow clamps; 'reassoc' would reorder sums, so reductions accumulate
float32 in float64 instead. error_model='numpy' makes x/0 give inf/nan as in NumPy.
Conditional expressions are computed on both sides and selected (branch-free), so LLVM
vectorises the loop; templates are pure, so evaluating both sides is harmless.
"""

from graphc.backends.loopgen import LoopSpec, ReduceSpec
from graphc.backends.templates import CAST, body_lines, literal, node_statements  # noqa: F401  (re-exported)

FASTMATH = "{'contract'}"
HEADER = """# graphc generated kernel: {label} (source is a pure function of the fused group)
import math
import numpy as np
from numba import njit
from graphc.backends.numba.vmath import radd as _radd, vexp as _vexp, vtanh as _vtanh

F = np.float32


@njit(parallel=False, fastmath={fastmath}, error_model="numpy", nogil=True)
"""

_VMATH = {"exp": "_vexp", "tanh": "_vtanh"}
_CAST = CAST


def _body(spec: LoopSpec, idx: list[str], indent: str):
    """Loads, statements and stores of one loop iteration; returns (lines, name of node id)."""

    def load(k, mask):
        return f"a{k}[{', '.join('0' if b else i for b, i in zip(mask, idx))}]"

    def store(k):
        return f"o{k}[{', '.join(idx)}]"

    return body_lines(spec, load, store, indent, _VMATH)


def elementwise_source(spec: LoopSpec, label: str) -> str:
    """An elementwise loop nest over the (collapsed) loop shape."""
    r = spec.rank
    args = [f"n{d}" for d in range(r)] + [f"a{k}" for k in range(len(spec.inputs))]
    args += [f"o{k}" for k in range(len(spec.outputs))]
    lines = [f"def kernel({', '.join(args)}):"]
    for d in range(r):  # serial: a large loop is split over the cores by its step (steps.SplitLoopKernel)
        lines.append("    " * (d + 1) + f"for i{d} in range(n{d}):")
    body, _ = _body(spec, [f"i{d}" for d in range(r)], "    " * (r + 1))
    lines += body
    return HEADER.format(label=label, fastmath=FASTMATH) + "\n".join(lines) + "\n"


def reduce_source(spec: LoopSpec, anchor, rs: ReduceSpec, reduced: tuple, label: str) -> str:
    """A loop nest over the reduction's input shape; `reduced[d]` marks reduced (collapsed) dims.

    Arguments: sizes, inputs, materialised producers, then the result twice: with kept
    dims (reduced dims of size 1) and flat (for initialisation and finalisation).
    """
    r = spec.rank
    dt = anchor.dtype
    cast = _CAST[dt]
    init = literal(rs.init(dt), dt)
    args = [f"n{d}" for d in range(r)] + [f"a{k}" for k in range(len(spec.inputs))]
    args += [f"o{k}" for k in range(len(spec.outputs))] + ["res", "flat"]
    lines = [f"def kernel({', '.join(args)}):", "    for j in range(flat.shape[0]):", f"        flat[j] = {init}"]
    local = reduced[-1]  # innermost dim reduced: accumulate in a local
    ridx = ", ".join("0" if reduced[d] else f"i{d}" for d in range(r))
    for d in range(r):
        ind = "    " * (d + 1)
        if d == r - 1 and local:
            acc0 = "0.0" if rs.wide and dt == "float32" else init
            lines.append(ind + f"acc = {acc0}")
        lines.append(ind + f"for i{d} in range(n{d}):")
    body, names = _body(spec, [f"i{d}" for d in range(r)], "    " * (r + 1))
    lines += body
    val = names[anchor.inputs[0].id]
    if local:
        # a float sum's accumulator adds may be reassociated (vmath.radd): partial sums, vectorised
        step = f"_radd(acc, {val})" if rs.wide and dt.startswith("float") else rs.combine.format(a="acc", b=val)
        lines.append("    " * (r + 1) + "acc = " + step)
        lines.append("    " * r + f"res[{ridx}] = {cast}(" + rs.combine.format(a=f"res[{ridx}]", b="acc") + ")")
    else:
        lines.append("    " * (r + 1) + f"res[{ridx}] = {cast}(" + rs.combine.format(a=f"res[{ridx}]", b=val) + ")")
    if rs.finalize:
        count = " * ".join([f"n{d}" for d in range(r) if reduced[d]] or ["1"])
        lines += [f"    cnt = {count}", "    for j in range(flat.shape[0]):",
                  f"        flat[j] = {cast}(" + rs.finalize.format(a="flat[j]", n="cnt") + ")"]  # fmt: skip
    return HEADER.format(label=label, fastmath=FASTMATH) + "\n".join(lines) + "\n"
