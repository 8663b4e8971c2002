"""A library call's batch split over this process's cores: Python threads running the parts,
whose kernels release the GIL (Numba's nogil kernels, natively loaded kernels, NumPy's matmul).

How many threads is the runtime's BLAS tuner's pick for the specialisation (`blas.large`: it
times whole calls on one thread and on all cores, and re-checks as the load changes), so a
loaded box keeps one thread and an idle one uses every core. The parts' own BLAS calls run on
one thread each.

Each part handed to a worker runs on a core other than the caller's (the worker's affinity is
set to it, on Linux): left to the scheduler, a woken worker often shares the caller's core for
milliseconds (measured on two 2.5 ms loop parts: side by side 2.8 ms pinned, 5-6 ms not, when
another core looked busy).
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from graphc.backends.numba import blas
from graphc.backends.numba.native import NativeTask

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()
_LOCAL = threading.local()  # a worker's pinned core
_CPUS: list[int] = []  # the cores this process may use, when the pool was made
_GETCPU = None
MIN_PART_ELEMENTS = 1 << 16  # a part under this many elements costs more to hand over (~20 us) than it saves


def _pool() -> ThreadPoolExecutor:
    global _POOL, _GETCPU
    if _POOL is None:
        with _LOCK:
            if _POOL is None:
                if hasattr(os, "sched_setaffinity"):
                    _CPUS.extend(sorted(os.sched_getaffinity(0)))
                    try:
                        _GETCPU = ctypes.CDLL(None).sched_getcpu
                    except (OSError, AttributeError):
                        pass
                _POOL = ThreadPoolExecutor(max_workers=max(1, blas.cores() - 1), thread_name_prefix="graphc-split")
    return _POOL


def _pinned(fn, cpu):
    """fn run on core `cpu` (None: wherever the scheduler puts it)."""

    def run():
        _LOCAL.worker = True
        if cpu is not None and getattr(_LOCAL, "cpu", None) != cpu:
            try:
                os.sched_setaffinity(0, {cpu})
                _LOCAL.cpu = cpu
            except OSError:
                pass
        fn()

    return run


def _other_cpus(n: int) -> list:
    """n cores for the workers, other than the one this thread runs on now (None each where unknown)."""
    here = _GETCPU() if _GETCPU is not None else -1
    others = [c for c in _CPUS if c != here]
    if here < 0 or not others:
        return [None] * n
    return [others[i % len(others)] for i in range(n)]


def threads(n: int, elements: int) -> int:
    """How many parts a batch of n items, `elements` array elements in all, is split into now."""
    return max(1, min(blas.large, n, elements // MIN_PART_ELEMENTS))


def over_batch(n: int, elements: int, part, task=None) -> None:
    """part(lo, hi) over consecutive slices of range(n), one per thread, the first in this thread;
    returns when every part has (an error in any part is raised here). `elements`: how many
    array elements the whole batch reads or writes (small batches are not split). `task(lo, hi)`,
    if given: the same part as a native.NativeTask (or None), for graphc's native workers."""
    t = threads(n, elements)
    if t == 1:
        part(0, n)
        return
    bounds = [n * i // t for i in range(t + 1)]
    tasks = [task(bounds[i], bounds[i + 1]) for i in range(t)] if task is not None else [None]
    if all(x is not None for x in tasks):
        in_parallel(tasks)
        return
    in_parallel([lambda i=i: part(bounds[i], bounds[i + 1]) for i in range(t)])


def in_parallel(fns) -> None:
    """Each of `fns` called in a thread of its own, the first in this one; returns when every
    one has (an error in any is raised here). Their work must release the GIL to overlap.
    Called from a worker (a part that splits again), they run in turn: a worker waiting on the
    pool could wait for itself."""
    if getattr(_LOCAL, "worker", False):
        for fn in fns:
            fn()
        return
    if len(fns) > 1 and all(isinstance(f, NativeTask) for f in fns[1:]):
        from graphc.backends.numba import team  # imported where a split first has native parts

        workers = team.team()  # native parts: handed over in a microsecond (team.py)
        if workers is not None and workers.run(fns):
            return
    pool = _pool()
    futures = [pool.submit(_pinned(fn, cpu)) for fn, cpu in zip(fns[1:], _other_cpus(len(fns) - 1))]
    try:
        fns[0]()
    finally:
        for f in futures:
            f.result()


def product_blocks(m: int, n: int, parts: int) -> list[tuple[slice, slice]]:
    """(rows, columns) of each part of an m x n product over `parts` threads: its longer side
    cut (each part then packs the smaller share of the operand along it)."""
    if n > m:
        return [(slice(None), slice(n * i // parts, n * (i + 1) // parts)) for i in range(parts)]
    return [(slice(m * i // parts, m * (i + 1) // parts), slice(None)) for i in range(parts)]


def own_threads(flops: float) -> int:
    """How many of graphc's threads a product of `flops` runs on now: the tuner's pick where the
    runtime runs its products on its own threads (blas.own_threads), else 1 (BLAS threads it)."""
    return blas.large if blas.own_threads and flops >= blas.SMALL_FLOPS and blas.large > 1 else 1
