"""A native loop run in parts over the rows of its batch, one thread per core.

A recurrent layer's step keeps the rows of its batch apart (graphc.backends.scan_rows), so its
loop can run as P loops over B/P rows each, side by side, with nothing exchanged between them:
each part's driver takes its rows of the carries as views and the stacked values (x slices,
ys, carry-in residuals) whole, with where its rows start in each step (no copy in or out), and
runs its own small products on one BLAS thread. Measured on the LSTM step of benchmarks/ (batch 32, hidden 128):
a step's 32x128 by 128x512 product split over 2 OpenBLAS threads waits on their hand-over at
every step, while two 16-row loops on one thread each never meet until the end.

Whether the parts run side by side or one after the other in the calling thread is a BLAS
tuner's pick (numba/blas.py: timed on whole calls, re-checked as the load changes); on a busy
machine the parts run in turn, at the cost of one small loop more. GRAPHC_SCAN_PARTS=1 keeps
every loop whole.
"""

import math
import os
from typing import NamedTuple

import numpy as np

from graphc.backends import plan as planning
from graphc.backends.numba import batch_split, blas
from graphc.backends.scan_rows import batch_rows, body_over
from graphc.errors import GraphcError

__all__ = ["Parts", "SplitScan", "plan_parts", "part_shapes", "output_types", "MIN_ROWS"]

MIN_ROWS = 8  # rows a part needs: fewer make a step's products too thin to gain from a core of their own
MIN_PART_ELEMENTS = 1 << 15  # carried and stacked elements a part writes per call, below which a thread costs more


class Parts(NamedTuple):
    """How a scan's batch is cut: `count` parts of `rows` rows each, the body over `rows` rows,
    and the scan outputs (indices) that sum the rows at each step: each part writes its own
    partial sums, which are added."""

    count: int
    rows: int
    body: object  # a SubGraph
    summed: frozenset


def plan_parts(node, in_shapes, out_shapes) -> Parts | None:
    """The parts to run scan `node` in at these concrete shapes, or None (the loop stays whole:
    one core, too few rows, or a body that mixes rows)."""
    if os.environ.get("GRAPHC_SCAN_PARTS") == "1":
        return None
    cores = blas.cores()
    a = node.attrs
    body, nc = a["body"], a["num_carry"]
    if cores < 2 or not body.inputs:
        return None
    first = in_shapes[0] if nc else in_shapes[nc][1:]  # a carry, or an x slice
    B = first[0] if first else 0
    count = max((p for p in range(2, cores + 1) if B % p == 0 and B // p >= MIN_ROWS), default=0)
    if not count:
        return None
    T = in_shapes[nc][0] if a["num_xs"] else (out_shapes[nc][0] if len(out_shapes) > nc else 1)
    written = sum(math.prod(s) for s in out_shapes)
    if written < MIN_PART_ELEMENTS * count or T < 2:
        return None
    try:
        found = batch_rows(body, nc)
        if isinstance(found.size, int) and found.size != B:
            return None
        return Parts(count, B // count, body_over(body, B // count), found.summed)
    except GraphcError:  # NotRowwise, or the body does not re-infer at fewer rows
        return None


def output_types(node, out_shapes) -> list:
    """(shape, dtype) of each of scan `node`'s outputs at these concrete shapes."""
    return [(tuple(s), d) for s, (_, d) in zip(out_shapes, node.types)]


def part_shapes(in_shapes, out_shapes, nc: int, nx: int, rows: int, summed=frozenset()) -> tuple[list, list]:
    """One part's input and output shapes: `rows` rows on axis 0 of a carry (and of a final
    carry), on axis 1 of a stacked value (x's, ys, carry-in residuals); captured values and
    the `summed` outputs whole."""

    def cut(s, axis):
        s = list(s)
        s[axis] = rows
        return tuple(s)

    ins = [cut(s, 0) if k < nc else cut(s, 1) if k < nc + nx else tuple(s) for k, s in enumerate(in_shapes)]
    outs = [tuple(s) if k in summed else cut(s, 0 if k < nc else 1) for k, s in enumerate(out_shapes)]
    return ins, outs


def _rows_of(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of a C-contiguous [B, ...] array seen flat, a view (setting the shape raises
    where NumPy would copy: the parts write into it)."""
    flat = a.view()
    flat.shape = (a.size,)
    w = math.prod(a.shape[1:])
    return flat[lo * w : hi * w]


def _start(a: np.ndarray, lo: int) -> int:
    """Where row lo's values start in each step's row of a stacked [T, B, ...] array."""
    return lo * math.prod(a.shape[2:])


class SplitScan:
    """The run function of a scan run in parts (see the module doc): `into(outs, *inputs)` like
    NativeScan's; `parts` are NativeScans over `rows` rows each."""

    def __init__(self, node, parts: list, rows: int, summed: frozenset, out_shapes, reference):
        self.node, self.parts, self.rows = node, parts, rows
        for p in parts[1:]:  # one C-ordered copy of a transposed weight per call, made by the first
            p.ordered_by = parts[0]
        self.out_types = output_types(node, out_shapes)  # the whole scan's
        self.summed = sorted(summed)  # outputs each part sums its rows of: into a buffer of its own
        self.partial = [[np.zeros(s, d) for k, (s, d) in enumerate(p.loop.out_types) if k in summed] for p in parts]
        self.loop = parts[0].loop  # the body's plan and driver, for what a caller inspects
        self._reference = reference  # inputs -> outputs: the scan's reference loop
        self.pools = None
        self.flops = sum(p.flops for p in parts)
        self.threaded = True
        self.bound = False

    @property
    def fallback(self):
        return next((p.fallback for p in self.parts if p.fallback is not None), None)

    def __call__(self, *inputs):
        if self.pools is None:
            self.pools = [planning.OutputPool(s, d) for s, d in self.out_types]
        outs = tuple(p.get() for p in self.pools)
        self.into(outs, *inputs)
        return outs

    def into(self, outs, *inputs) -> None:
        lp = self.loop
        nc, nx, ny = lp.nc, lp.nx, lp.ny
        if self.fallback is None:
            init = [np.ascontiguousarray(a) for a in inputs[:nc]]
            xs = [np.ascontiguousarray(a) for a in inputs[nc : nc + nx]]
            caps = inputs[nc + nx :]
            work = []
            for i, part in enumerate(self.parts):
                lo, hi = i * self.rows, (i + 1) * self.rows
                mine = list(outs)
                for k, buf in zip(self.summed, self.partial[i]):
                    mine[k] = buf  # its own partial sums, whole
                ys, rs = mine[nc : nc + ny], mine[nc + ny :]
                starts = [_start(a, lo) for a in xs]
                starts += [0 if nc + j in self.summed else _start(a, lo) for j, a in enumerate(ys)]
                starts += [_start(a, lo) for a in rs]
                init_rows = [_rows_of(a, lo, hi) for a in init]
                final_rows = [_rows_of(a, lo, hi) for a in mine[:nc]]
                work.append((part, (init_rows, xs, caps, final_rows, ys, rs, starts)))
            # side by side where the runtime's tuner picked all cores (and graphc's threads run its
            # products: no BLAS worker spins on a part's core); the first call binds and compiles
            side_by_side = blas.own_threads and blas.large > 1 and self.bound
            blas.use(1)
            if side_by_side:
                results = self._side_by_side(work)
            else:
                results = [p.run(*a) for p, a in work]
            if all(results):
                self.bound = True
                for j, k in enumerate(self.summed):  # the parts' partial sums
                    np.copyto(outs[k], self.partial[0][j])
                    for bufs in self.partial[1:]:
                        np.add(outs[k], bufs[j], out=outs[k])
                return
        for out, res in zip(outs, self._reference(inputs)):
            out[...] = res

    def _side_by_side(self, work) -> list:
        """Each part on a core of its own: the drivers' calls, bound here, as native tasks for
        graphc's workers (team.py) where they are native code."""
        args = [p.prepare(*a) for p, a in work]
        if any(a is None for a in args):
            return [False]
        tasks = [p.task(a) for p, a in zip(self.parts, args)]
        if all(t is not None for t in tasks):
            batch_split.in_parallel(tasks)
        else:
            batch_split.in_parallel([lambda p=p, a=a: p.loop.driver(*a) for p, a in zip(self.parts, args)])
        return [True] * len(work)

    def describe(self) -> list[str]:
        if self.fallback is not None:
            return [f"reference loop: {self.fallback}"]
        head, *rest = self.loop.describe()
        return [f"{head}, in {len(self.parts)} parts of {self.rows} batch rows (one core each)", *rest]
