"""The source of a scan's native loop driver with flat arguments, which graphc compiles itself.

`flat_driver(loop)` writes the driver of scan_loop.ScanLoop `loop` (see scan_loop's module doc
for what it runs) with one parameter per array or size: T, then INIT_k, XS_j, FINAL_k, YS_j,
RS_k, OFF_k, C_k, X_j, S_k, O_k and each step's arguments P{i}_{n}, instead of tuples of them.
OFF holds where in each row of XS, YS and RS (in that order) the loop's values start: 0 for a
whole loop, the first row's offset for a part of the batch's rows (scan_split.py), which then
indexes the whole stacked arrays, contiguous, rather than strided views of them. In that
form it is in the subset graphc's own compiler translates (kernel_ir.py: the body's kernels,
imported by name, are inlined where called; np.dot is a BLAS gemm, kernel_blas.py), so a cold
process compiles the loop without Numba. The same text is a valid Numba module (the imports
name the body kernels' modules), which runs a driver that does not translate.

`flatten(loop, args)` gives the driver's flat argument tuple from ScanLoop's grouped arguments.
A loop with a nested scan keeps the tuple form (its inner driver is called with tuples).
"""

import re
from typing import NamedTuple

from graphc.backends.numba import codegen
from graphc.ops.control import saves_residuals

__all__ = ["FlatDriver", "flat_driver", "flatten", "body_lines", "driver_text"]

HEADER = """# graphc generated scan driver (flat arguments): {label} (source is a pure function of the body's kernels)
import numpy as np
from numba import njit
{imports}


@njit(fastmath={fastmath}, error_model="numpy", nogil=True)
def kernel({params}):
"""


class FlatDriver(NamedTuple):
    """A flat driver's source, its parts ((name, source) of each body kernel it calls) and the
    number of arrays in each argument group (INIT, XS, ..., O, then one per step)."""

    source: str
    parts: tuple
    counts: tuple


def _groups(loop) -> list[tuple[str, int]]:
    nc, nx, ny = loop.nc, loop.nx, loop.ny
    nr = nc if saves_residuals(loop.node.attrs) else 0
    ns = nc if loop.staged else 0
    return [("INIT", nc), ("XS", nx), ("FINAL", nc), ("YS", ny), ("RS", nr), ("OFF", nx + ny + nr), ("C", nc),
            ("X", nx), ("S", ns), ("O", nc + ny)]  # fmt: skip


def flat_driver(loop) -> FlatDriver | None:
    """The flat driver of `loop`, or None where a step is a nested scan (the tuple form then)."""
    steps = loop.plan.steps
    imports, parts, counts = [], [], []
    for i, st in enumerate(steps):
        if st.call is not None:
            if st.call.callee is not None:
                return None
            counts.append(len(st.ins) + len(st.outs))
        else:
            imports.append(f"from {st.callee[0]} import {st.callee[1]} as f{i}")
            parts.append((f"f{i}", st.source))
            counts.append(len(st.args))
    groups = _groups(loop)
    params = ["T"] + [f"{g}_{k}" for g, n in groups for k in range(n)]
    params += [f"P{i}_{n}" for i, c in enumerate(counts) for n in range(c)]

    def statement(i, st):  # step i's arguments are flat parameters too
        return re.sub(rf"\bP{i}\[(\d+)\]", rf"P{i}_\1", st.statement(f"f{i}", f"P{i}"))

    lines = body_lines(loop, lambda g, k: f"{g}_{k}", statement)
    text = driver_text(loop, HEADER, imports, params, lines)
    return FlatDriver(text, tuple(parts), tuple(n for _, n in groups) + tuple(counts))


def body_lines(loop, name, statement) -> list[str]:
    """The body of `loop`'s driver, in either form: the carries from INIT, the time loop (the
    carry-in residuals if the scan stacks them, the x slices, the body's steps, the ys, the new
    carries, through staging buffers if a carry is swapped), then FINAL. name(group, k) spells
    array k of an argument group ("C_0" flat, "C[0]" as a tuple); statement(i, step) is step i's call."""
    nc, ny = loop.nc, loop.ny
    ind = "        "

    def copy(dst, src, size, depth):  # every value the driver copies is seen flat (1-d)
        pad = "    " * depth
        return [pad + f"for q in range({size}.shape[0]):", pad + f"    {dst} = {src}"]

    # a stacked value's row t, from where the loop's values start in it (off{k}): written as a
    # range from that start, so the index is evidently >= 0 and the copy vectorises
    def to_stack(k, stack, src):
        return [
            ind + f"for q in range(off{k}, off{k} + {src}.shape[0]):",
            ind + f"    {stack}[t, q] = {src}[q - off{k}]",
        ]

    def from_stack(k, dst, stack):
        return [
            ind + f"for q in range(off{k}, off{k} + {dst}.shape[0]):",
            ind + f"    {dst}[q - off{k}] = {stack}[t, q]",
        ]

    def each(count, dst, src, size, depth):  # dst, src, size: (group, index suffix) pairs
        out = []
        for k in range(count):
            out += copy(name(dst[0], k) + dst[1], name(src[0], k) + src[1], name(size, k), depth)
        return out

    nx = loop.nx
    nr = nc if saves_residuals(loop.node.attrs) else 0
    lines = [f"    off{k} = max({name('OFF', k)}, 0)" for k in range(nx + ny + nr)]
    lines += each(nc, ("C", "[q]"), ("INIT", "[q]"), "C", 1)
    lines.append("    for i in range(T):")
    lines.append(ind + ("t = T - 1 - i" if loop.reverse else "t = i"))
    for k in range(nr):
        lines += to_stack(nx + ny + k, name("RS", k), name("C", k))
    for j in range(nx):
        lines += from_stack(j, name("X", j), name("XS", j))
    for i, st in enumerate(loop.plan.steps):
        lines += [ind + x for x in statement(i, st).splitlines()]
    for j in range(ny):  # the ys are the body outputs after the carries
        lines += to_stack(nx + j, name("YS", j), name("O", nc + j))
    if loop.staged:
        lines += each(nc, ("S", "[q]"), ("O", "[q]"), "S", 2)
        lines += each(nc, ("C", "[q]"), ("S", "[q]"), "C", 2)
    else:
        lines += each(nc, ("C", "[q]"), ("O", "[q]"), "C", 2)
    lines += each(nc, ("FINAL", "[q]"), ("C", "[q]"), "C", 1)
    return lines


def driver_text(loop, header: str, imports, params, lines) -> str:
    """The driver module: `header` (with the loop's label, the imports and the parameters), then `lines`."""
    label = "scan_" + "_".join(dict.fromkeys(n.op for n in loop.plan.nodes.values() if not n.is_source))[:60]
    head = header.format(label=label, imports="\n".join(imports), fastmath=codegen.FASTMATH, params=", ".join(params))
    return head + "\n".join(lines) + "\n"


def flatten(counts: tuple, args: tuple) -> tuple:
    """The flat driver's arguments from ScanLoop's grouped ones: (T, INIT, XS, FINAL, YS, RS, OFF,
    C, X, S, O, P0, P1, ...), each group a tuple of `counts` entries."""
    out = [args[0]]
    for n, group in zip(counts, args[1:]):
        if len(group) != n:
            raise AssertionError(f"a driver argument group has {len(group)} entries, not {n}")
        out += group
    return tuple(out)
