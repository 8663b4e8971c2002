"""BLAS thread count per matrix product, and a tuner for the large ones.

OpenBLAS spins its worker threads; on a 2-core box that other processes also use, a GEMM split
over 2 threads waits for a descheduled worker: measured here under load ~4, a 128x784x512 sgemm
took 48 ms on 2 threads against 1.6 ms on one, and a 64x256x120 one 30 ms against 0.05 ms. On
an idle box 2 threads halve the large ones. So:

- products under SMALL_FLOPS always run on one thread (threads never pay for them);
- larger ones use `large` threads, which a `Tuner` per shape specialisation picks by timing
  whole calls with 1 and with all cores, re-checking now and then (the load changes);
- the products inside a native loop (a scan's steps) follow each other at once, the workers
  still awake: from LOOP_SMALL_FLOPS up, the loop has a Tuner of its own that times its driver
  calls (measured under a load of ~2.7: 50 steps of a 32x128x512 sgemm in a Numba loop, 3.1 ms
  on 1 thread, 2.0 on 2).

GRAPHC_BLAS_THREADS=n fixes the count for every product (no tuning). The caller's own setting
is put back at the end of every call (`restore`), so NumPy code outside graphc is unaffected.
Without threadpoolctl every function here does nothing.
"""

import ctypes
import os
import time

SMALL_FLOPS = 8e6  # 2*m*n*k below which one thread is best even on an idle box (about 0.1 ms)
LOOP_SMALL_FLOPS = 2e6  # the same for the products of a loop's steps (about 20 us each)

_libs = None
_current = None  # the count last set by us (None: the caller's)
_saved = None
large = 1  # threads for products >= SMALL_FLOPS, set by the executor from its tuner
# the executor's products and loops run on graphc's own threads (batch_split), BLAS on one thread
# each: set for a runtime with a loop run in parts (numba/scan_split.py), as OpenBLAS's workers
# spin for ~0.1 s after each threaded call and take half the core a part runs on
own_threads = False


def _controllers():
    global _libs
    if _libs is None:
        try:
            from threadpoolctl import ThreadpoolController

            _libs = [_Lib(c) for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        except Exception:  # not installed, or a BLAS it cannot drive
            _libs = []
    return _libs


class _Lib:
    """One BLAS library: threadpoolctl's controller, with OpenBLAS's setter looked up once
    (threadpoolctl resolves the symbol on every call: 3.6 us, against 0.3 us)."""

    def __init__(self, ctl):
        self.path = ctl.filepath  # which library (rescan: the ones already known)
        self.get_num_threads = ctl.get_num_threads
        self.set_num_threads = ctl.set_num_threads
        self.native = None  # the address of its void setter(int), where it has one
        if ctl.internal_api == "openblas":
            try:
                fn = ctl._get_symbol("openblas_set_num_threads")
                if fn is not None:
                    self.set_num_threads = fn
                    self.native = ctypes.cast(fn, ctypes.c_void_p).value
            except Exception:
                pass


def rescan() -> None:
    """Find the BLAS libraries again: one was loaded since (native.py loads SciPy's OpenBLAS for
    the products of graphc's own kernels where NumPy's is not an OpenBLAS; left out, it would
    keep its default thread count and its spinning workers whatever `use` says). The caller's
    own counts are saved for the new one too."""
    global _libs, _saved
    if _libs is None:
        return
    old = {c.path: c for c in _libs}
    try:
        from threadpoolctl import ThreadpoolController

        found = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
    except Exception:
        return
    libs = [old.get(c.filepath) or _Lib(c) for c in found]
    if _current is not None:  # ours are set: save the new library's own count, then set it too
        saved = dict(zip((c.path for c in _libs), _saved))
        _saved = [saved[c.path] if c.path in saved else c.get_num_threads() for c in libs]
        for c in libs:
            if c.path not in saved:
                c.set_num_threads(_current)
    _libs = libs


def native_setters() -> tuple | None:
    """The addresses of every BLAS library's native thread-count setter (`void f(int)`), for code
    that switches the count between products without Python (chain.py): an equal tuple while the
    libraries are the same (compare with ==: a rescan makes a new one); None where one has no
    such setter."""
    global _setters
    libs = _controllers()
    if _setters[0] is not libs:  # found again (rescan makes a new list): their setters too
        addrs = tuple(c.native for c in libs)
        _setters = (libs, None if any(a is None for a in addrs) else addrs)
    return _setters[1]


_setters: tuple = (None, None)  # (the libraries they were read from, their setters or None)


def set_natively(n: int) -> None:
    """The count is n now: set by native code through native_setters() after a `use`."""
    global _current
    if _current is not None:
        _current = n


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fixed() -> int | None:
    v = os.environ.get("GRAPHC_BLAS_THREADS")
    return max(1, int(v)) if v and v.isdigit() else None


def use(n: int) -> None:
    """Run the next products on n threads (one while `own_threads`)."""
    global _current, _saved
    if own_threads:
        n = 1
    if n == _current:
        return
    libs = _controllers()
    if not libs:
        return
    if _current is None:
        _saved = [c.get_num_threads() for c in libs]
    for c in libs:
        c.set_num_threads(n)
    _current = n


def restore() -> None:
    """Give the caller back its own thread count."""
    global _current
    if _current is None:
        return
    for c, n in zip(_controllers(), _saved):
        c.set_num_threads(n)
    _current = None


class Tuner:
    """Picks 1 or all cores for the large products of one specialisation, by timing calls.

    Calls 0-1 are warm-up (compilation). Then each count runs a block of BLOCK consecutive calls,
    the first after a switch untimed (OpenBLAS's workers wake up on it: alternating counts call by
    call makes more threads look slow), and the faster median wins. The loser gets another block
    FIRST_RECHECK calls later, then after `recheck` calls, a doubling interval (doubled already
    after the early look where the loser lost clearly, by CLEAR), so a change of load is noticed
    without paying for probes often. A probe block ends at its first timed call ABORT times
    slower than the other count: on a busy core the rest of it would cost as much again.
    """

    BLOCK = 4
    FIRST_RECHECK = 8
    RECHECK = 50
    CLEAR = 1.25  # a loser this much slower than the best lost clearly
    ABORT = 2.0  # a probe call this much slower than the other count ends its block

    def __init__(self, has_large: bool):
        n = fixed()
        self.choices = [n] if n else ([1, cores()] if has_large and cores() > 1 else [1])
        self.times = {c: [] for c in self.choices}
        self.best = self.choices[0]
        self.calls = 0
        self.recheck = self.RECHECK
        self.next_check = None  # None: the first round has not been decided
        self.queue: list[int] = []  # counts for the coming probe calls
        self.used = self.last = None
        self.rounds = 0  # probe rounds decided: the first, its early second look, then the rechecks

    def pick(self) -> int:
        self.calls += 1
        self.last, self.used = self.used, self.best
        if len(self.choices) == 1 or self.calls <= 2:
            return self.best
        if self.next_check is None and not self.queue and not any(self.times.values()):
            self.queue = [c for c in self.choices for _ in range(self.BLOCK)]
        elif self.next_check is not None and self.calls >= self.next_check and not self.queue:
            other = next(c for c in self.choices if c != self.best)
            self.times[other] = []
            self.queue = [other] * self.BLOCK
            self.next_check = None
        if self.queue:
            self.used = self.queue.pop(0)
        return self.used

    def start(self) -> float:
        return time.perf_counter() if len(self.choices) > 1 else 0.0

    def done(self, t0: float) -> None:
        if len(self.choices) == 1 or self.calls <= 2:
            return
        if self.used != self.last:  # the first call after a switch: threads were waking up
            return
        hist = self.times[self.used]
        hist.append(time.perf_counter() - t0)
        del hist[:-9]  # recent calls only: the load changes
        if self.queue and self._far_behind(hist[-1]):
            # each probe call of a far slower count costs a step's worth: its block ends here
            self.queue = [c for c in self.queue if c != self.used]
        if self.queue or self.next_check is not None:
            return
        # a probe round just ended: decide, then wait before looking again
        timed = {c: v for c, v in self.times.items() if v}
        first = self.rounds == 0
        if len(timed) == len(self.choices):
            fastest = min(timed, key=lambda c: _median(timed[c]))
            margin = 1.0 if self.rounds < 2 else 0.9  # a later switch must win clearly
            if fastest != self.best and _median(timed[fastest]) < margin * _median(timed[self.best]):
                self.best, self.recheck = fastest, self.RECHECK
            elif self.rounds >= 2 or (self.rounds == 1 and self._lost_clearly(timed)):
                # each probe of the loser costs its slowdown: one that lost clearly in the early
                # look too is looked at half as often from then on
                self.recheck *= 2
            self.rounds += 1
        # the first round is looked at again soon: a core taken away during its few calls (another
        # process, a VM's neighbour) would otherwise fix the slower count for RECHECK calls, most of
        # a short run (seen on the LSTM step's loops: 2 threads probed at 5.8 ms against 3.5 later)
        self.next_check = self.calls + (self.FIRST_RECHECK if first else self.recheck)

    def _far_behind(self, t: float) -> bool:
        """Is call time t, of the count being probed, ABORT times the other counts' median?"""
        others = [v for c, v in self.times.items() if c != self.used and v]
        return bool(others) and all(t >= self.ABORT * _median(v) for v in others)

    def _lost_clearly(self, timed: dict) -> bool:
        best = _median(timed[self.best])
        return all(_median(v) >= self.CLEAR * best for c, v in timed.items() if c != self.best)


def _median(v):
    return sorted(v)[len(v) // 2]
