"""Thread safety of compiled steps: one lock per set of variables.

A compiled step owns state that one call uses from start to end: planned buffers, output
pools, the variables it reads and updates in place (graph.values), its step counter. So a
call holds a lock for all of it (input checks, kernels, output copies, updates), and the
calls of every step that shares those variables queue for the same lock: a training step
and an evaluation step compiled from one graph, on any backend, see each other's calls
whole, never half done. Steps of graphs with separate variables run concurrently.
"""

import threading
import weakref

__all__ = ["variables_lock"]

_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Graph -> Lock
_GUARD = threading.Lock()


def variables_lock(graph) -> threading.Lock:
    """The lock of graph's variables: the same for every graph sharing its `values` (the
    optimized copies that backends compile share the user's graph's values)."""
    lock = _LOCKS.get(graph)
    if lock is not None:
        return lock
    with _GUARD:
        lock = _LOCKS.get(graph)
        if lock is None:
            lock = next((v for g, v in list(_LOCKS.items()) if g.values is graph.values), None) or threading.Lock()
            _LOCKS[graph] = lock
        return lock
