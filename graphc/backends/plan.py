"""Static memory plan: buffers given once from liveness, reused across steps and calls.

Backend-neutral: a backend describes its schedule as steps (which values each step reads and
writes), the byte size of each planned value, which values are views of others, and which
writes may take over a dying input's buffer (elementwise kernels reading and writing the same
index). `plan_memory` returns a buffer for every planned value; the backend allocates the
buffers once per shape specialisation (as bytes; typed views are cut from them).

`OutputPool` hands out the arrays that a call returns: a returned array is never written again
while the caller holds it (we check the reference count), so a loop `y = f(x)` cycles between
two arrays instead of allocating (and page-faulting) a fresh one each call.
"""

import sys
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Step", "MemoryPlan", "plan_memory", "OutputPool", "ALIGN"]

ALIGN = 64  # bytes; buffers start on cache lines (and SIMD-friendly boundaries)


@dataclass
class Step:
    """One kernel launch: value ids read and written; inplace[w] = reads whose buffer w may reuse."""

    reads: list
    writes: list
    inplace: dict = field(default_factory=dict)


@dataclass
class MemoryPlan:
    buffer_of: dict  # value id -> buffer index
    sizes: list  # bytes per buffer
    last_use: dict  # value id -> index of the last step reading it

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    def allocate(self) -> list[np.ndarray]:
        """The buffers, as aligned uint8 arrays."""
        out = []
        for size in self.sizes:
            raw = np.empty(size + ALIGN, np.uint8)
            off = (-raw.ctypes.data) % ALIGN
            out.append(raw[off : off + size])
        return out


def _round(n: int) -> int:
    return max(ALIGN, (n + ALIGN - 1) // ALIGN * ALIGN)


def plan_memory(steps: list[Step], nbytes: dict, alias: dict | None = None, keep=()) -> MemoryPlan:
    """Assign buffers to the values in `nbytes` (those a step writes into planned memory).

    alias: view id -> the value id it is a view of (a view keeps its base alive).
    keep: values that must survive to the end of the call (e.g. outputs read after the last step).
    A value dies after the last step that reads it (or any of its views); its buffer is then
    free for later writes. Writes of one step never share a buffer with that step's reads,
    except through `inplace`.
    """
    alias = dict(alias or {})

    def base(v):
        seen = 0
        while v in alias and seen < 1000:
            v, seen = alias[v], seen + 1
        return v

    end = len(steps)
    last: dict = {}
    for i, st in enumerate(steps):
        for v in st.reads:
            b = base(v)
            last[b] = max(last.get(b, -1), i)
        for v in st.writes:
            b = base(v)
            last.setdefault(b, i)
    for v in keep:
        last[base(v)] = end

    buffer_of: dict = {}
    sizes: list[int] = []
    free: list[int] = []  # buffer indices
    dying_at: dict[int, list] = {}
    for v, i in last.items():
        dying_at.setdefault(i, []).append(v)

    for i, st in enumerate(steps):
        taken = set()
        for w in st.writes:
            if w not in nbytes or w in buffer_of:
                continue
            need = _round(nbytes[w])
            # in place: a read that dies here, with a planned buffer of the same size
            for r in st.inplace.get(w, ()):
                rb = base(r)
                if rb == r and r in buffer_of and last.get(r) == i and buffer_of[r] not in taken:
                    if sizes[buffer_of[r]] >= need and not any(base(x) == r for x in st.writes if x != w):
                        buffer_of[w] = buffer_of[r]
                        taken.add(buffer_of[r])
                        break
            if w in buffer_of:
                continue
            fits = [b for b in free if sizes[b] >= need]
            if fits:
                b = min(fits, key=lambda b: sizes[b])
            elif free:
                b = max(free, key=lambda b: sizes[b])
                sizes[b] = need
            else:
                b = len(sizes)
                sizes.append(need)
            if b in free:
                free.remove(b)
            buffer_of[w] = b
            taken.add(b)
        for v in dying_at.get(i, ()):
            b = buffer_of.get(v)
            if b is not None and b not in free and not _still_used(b, buffer_of, last, i):
                free.append(b)
    return MemoryPlan(buffer_of, sizes, last)


def _still_used(b, buffer_of, last, i) -> bool:
    return any(buf == b and last.get(v, -1) > i for v, buf in buffer_of.items())


class OutputPool:
    """Arrays returned to the caller, reused once the caller has let go of them."""

    __slots__ = ("shape", "dtype", "arrays")

    MAX = 3

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.arrays = tuple(shape), np.dtype(dtype), []

    def get(self) -> np.ndarray:
        for a in self.arrays:
            # references: the list, the loop variable, getrefcount's argument
            if sys.getrefcount(a) <= 3:
                return a
        a = np.empty(self.shape, self.dtype)
        if len(self.arrays) < self.MAX:
            self.arrays.append(a)
        return a
