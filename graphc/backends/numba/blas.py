"""BLAS thread count per matrix product, and a tuner for the large ones.

OpenBLAS spins its worker threads; on a 2-core box that other processes also use, a GEMM split
over 2 threads waits for a descheduled worker: measured here under load ~4, a 128x784x512 sgemm
took 48 ms on 2 threads against 1.6 ms on one, and a 64x256x120 one 30 ms against 0.05 ms. On
an idle box 2 threads halve the large ones. So:

- products under SMALL_FLOPS always run on one thread (threads never pay for them);
- larger ones use `large` threads, which a `Tuner` per shape specialisation picks by timing
  whole calls with 1 and with all cores, re-checking now and then (the load changes).

GRAPHC_BLAS_THREADS=n fixes the count for every product (no tuning). The caller's own setting
is put back at the end of every call (`restore`), so NumPy code outside graphc is unaffected.
Without threadpoolctl every function here does nothing.
"""

import os
import time

SMALL_FLOPS = 8e6  # 2*m*n*k below which one thread is best even on an idle box (about 0.1 ms)

_libs = None
_current = None  # the count last set by us (None: the caller's)
_saved = None
large = 1  # threads for products >= SMALL_FLOPS, set by the executor from its tuner


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
        self.get_num_threads = ctl.get_num_threads
        self.set_num_threads = ctl.set_num_threads
        if ctl.internal_api == "openblas":
            try:
                fn = ctl._get_symbol("openblas_set_num_threads")
                if fn is not None:
                    self.set_num_threads = fn
            except Exception:
                pass


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def fixed() -> int | None:
    v = os.environ.get("GRAPHC_BLAS_THREADS")
    return max(1, int(v)) if v and v.isdigit() else None


def use(n: int) -> None:
    """Run the next products on n threads."""
    global _current, _saved
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

    Calls 0-1 are warm-up (compilation); then PROBES calls alternate between the two counts and
    the faster median wins. The loser is tried again after `recheck` calls, a doubling interval,
    so a change of load is noticed without paying for probes often.
    """

    PROBES = 6
    RECHECK = 50

    def __init__(self, has_large: bool):
        n = fixed()
        self.choices = [n] if n else ([1, cores()] if has_large and cores() > 1 else [1])
        self.times = {c: [] for c in self.choices}
        self.best = self.choices[0]
        self.calls = 0
        self.recheck = self.RECHECK
        self.next_check = None
        self.probing = None

    def pick(self) -> int:
        self.calls += 1
        if len(self.choices) == 1 or self.calls <= 2:
            self.probing = None
            return self.best
        if self.next_check is None:  # the first round of probes
            self.probing = self.choices[self.calls % 2]
            return self.probing
        if self.calls >= self.next_check:
            self.probing = [c for c in self.choices if c != self.best][0]
            return self.probing
        self.probing = None
        return self.best

    def start(self) -> float:
        return time.perf_counter() if len(self.choices) > 1 else 0.0

    def done(self, t0: float) -> None:
        if len(self.choices) == 1 or self.calls <= 2:
            return
        dt = time.perf_counter() - t0
        used = self.best if self.probing is None else self.probing
        hist = self.times[used]
        hist.append(dt)
        del hist[:-9]  # recent calls only: the load changes
        if self.next_check is None:  # first round: both counts timed PROBES // 2 times
            if all(len(v) >= self.PROBES // 2 for v in self.times.values()):
                self.best = min(self.choices, key=lambda c: _median(self.times[c]))
                self.next_check = self.calls + self.recheck
            return
        if self.probing is None:
            return
        # a recheck: one call with the other count against the best's recent median
        if dt < 0.9 * _median(self.times[self.best]):
            self.best = self.probing
            self.recheck = self.RECHECK
        else:
            self.recheck *= 2
        self.next_check = self.calls + self.recheck


def _median(v):
    return sorted(v)[len(v) // 2]
