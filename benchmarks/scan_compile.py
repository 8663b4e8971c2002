#!/usr/bin/env python
"""Compile time of a scan against its trip count, and the step time of the scan LSTM.

    python benchmarks/scan_compile.py [--lengths 10,100,1000] [--repeats 20] [--backend numba]

For each sequence length T, the `lstm_scan` workload (one LSTM layer under gc.scan, batch 32,
input 32, hidden 128, last state -> dense 10, cross-entropy, SGD) is built and run in a fresh
process with an empty GRAPHC_CACHE_DIR: `cold_compile_s` is the time from after `import graphc`
to the end of the first training step (building the graph and its gradient, the passes,
compiling every kernel and driver, the first call), `kernels_s` the part of it spent compiling
kernels and drivers (numba's `compile_stats()["compile_s"]`), `ms_per_step` the median of the
timed steps that follow, `ms_per_time_step` that divided by T. The numba backend compiles each
scan body once and takes T as a run-time argument, so compiling should not grow with T (issue 7:
T=10 and T=1000 within 20%); the first step's own run does (at T=1000 it takes two to three steady
steps: its buffers are touched for the first time).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
MARK = "@@scan-compile@@ "


def worker(seq: int, repeats: int, backend: str) -> dict:
    import numpy as np
    from workloads import lstm_scan

    t = time.perf_counter()
    import graphc as gc

    import_s = time.perf_counter() - t
    params, data = lstm_scan.make(np.random.default_rng(0))
    t = time.perf_counter()
    step = lstm_scan.graphc(gc, backend, params, data, seq=seq)
    loss = float(step())
    compile_s = time.perf_counter() - t
    kernels_s = _kernel_seconds(backend)
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append((time.perf_counter() - t) * 1e3)
    return {"import_s": import_s, "compile_s": compile_s, "kernels_s": kernels_s, "loss": loss, "times_ms": times}


def _kernel_seconds(backend: str) -> float:
    """Seconds this process spent compiling (or loading) kernels, where the backend counts them."""
    if backend != "numba":
        return float("nan")
    from graphc.backends.numba import compile_stats

    return compile_stats()["compile_s"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="10,100,1000", help="comma-separated sequence lengths")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per length")
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args(argv)
    rows = []
    for seq in (int(s) for s in args.lengths.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"scan-compile-{seq}-") as cache:
            env = {**os.environ, "GRAPHC_CACHE_DIR": os.path.join(cache, "graphc"),
                   "NUMBA_CACHE_DIR": os.path.join(cache, "numba"), "PYTHONWARNINGS": "ignore"}  # fmt: skip
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(seq), str(args.repeats), args.backend]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
        lines = [x for x in out.stdout.splitlines() if x.startswith(MARK)]
        if not lines:
            print(f"lstm_scan T={seq} failed: {(out.stderr.strip().splitlines() or ['no output'])[-1]}")
            return 1
        r = json.loads(lines[-1][len(MARK) :])
        ms = statistics.median(r["times_ms"]) if r["times_ms"] else float("nan")
        rows.append((r["compile_s"], r["kernels_s"]))
        print(f"lstm_scan T={seq} cold_compile_s={r['compile_s']:.3f} kernels_s={r['kernels_s']:.3f} "
              f"ms_per_step={ms:.3f} ms_per_time_step={ms / seq:.4f} loss={r['loss']:.6f}", flush=True)  # fmt: skip
    if len(rows) > 1:
        for i, what in ((0, "cold compile (first step)"), (1, "kernel compile")):
            lo, hi = min(r[i] for r in rows), max(r[i] for r in rows)
            print(f"# {what} spread: {hi / lo - 1:.1%} between the fastest and the slowest length")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(MARK + json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])), flush=True)
    else:
        sys.exit(main())
