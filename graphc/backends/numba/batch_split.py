"""A library call's batch split over this process's cores: Python threads running the parts,
whose kernels release the GIL (Numba's nogil kernels, natively loaded kernels, NumPy's matmul).

How many threads is the runtime's BLAS tuner's pick for the specialisation (`blas.large`: it
times whole calls on one thread and on all cores, and re-checks as the load changes), so a
loaded box keeps one thread and an idle one uses every core. The parts' own BLAS calls run on
one thread each.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from graphc.backends.numba import blas

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()
MIN_PART_ELEMENTS = 1 << 16  # a part under this many elements costs more to hand over (~20 us) than it saves


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        with _LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=max(1, blas.cores() - 1), thread_name_prefix="graphc-split")
    return _POOL


def threads(n: int, elements: int) -> int:
    """How many parts a batch of n items, `elements` array elements in all, is split into now."""
    return max(1, min(blas.large, n, elements // MIN_PART_ELEMENTS))


def over_batch(n: int, elements: int, part) -> None:
    """part(lo, hi) over consecutive slices of range(n), one per thread, the first in this thread;
    returns when every part has (an error in any part is raised here). `elements`: how many
    array elements the whole batch reads or writes (small batches are not split)."""
    t = threads(n, elements)
    if t == 1:
        part(0, n)
        return
    bounds = [n * i // t for i in range(t + 1)]
    futures = [_pool().submit(part, bounds[i], bounds[i + 1]) for i in range(1, t)]
    try:
        part(bounds[0], bounds[1])
    finally:
        for f in futures:
            f.result()
