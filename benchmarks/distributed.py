#!/usr/bin/env python
"""Data-parallel scaling: steps per second on 1 and 2 MPI processes, and the all-reduce's share.

    python benchmarks/distributed.py                     # 1 and 2 processes, the mlp workload
    python benchmarks/distributed.py --procs 1,2,4 --steps 200 --batch 64

Each world size runs as `mpiexec -n N python -m mpi4py benchmarks/distributed.py --worker ...`:
the MLP of benchmarks/workloads/mlp.py (784-512-256-10, ReLU, cross-entropy, SGD), built with
training_graph(distributed=True) on the numba backend, `--batch` samples per rank per step (weak
scaling: the global batch grows with the ranks). The cores are shared out: each rank gets
cores // N threads (NUMBA_NUM_THREADS, OMP_NUM_THREADS; `--threads` sets it), so 1 process x 2
threads is compared with 2 processes x 1 thread on a 2-core machine. Printed per world size:

    procs=N steps_per_s=... samples_per_s=... efficiency=... allreduce_ms=... allreduce_share=... buffer_mb=...

efficiency = samples_per_s(N) / (N x samples_per_s(1)); allreduce_ms is the median time of the
step's one Allreduce call (the flat gradient buffer: buffer_mb), allreduce_share its part of the
median step time. A last line times a bare Allreduce of the same buffer (no training) on N ranks.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def worker(args) -> None:
    sys.path[:0] = [str(ROOT)]
    import numpy as np

    import graphc as gc
    from graphc import nn
    from graphc.distributed import world
    from graphc.distributed.world import World

    w = world()
    calls: list[float] = []
    reduce_ = World.allreduce_

    def timed(self, buf, op="sum"):  # time every Allreduce the step makes
        t = time.perf_counter()
        out = reduce_(self, buf, op)
        calls.append(time.perf_counter() - t)
        return out

    World.allreduce_ = timed
    rng = np.random.default_rng(w.rank)
    b = args.batch
    g = gc.Graph("mlp", seed=0)
    with g:
        x = g.input("x", (b, 784))
        y = g.input("y", (b,), "int64")
        h = gc.relu(nn.dense(x, 512, name="d1"))
        h = gc.relu(nn.dense(h, 256, name="d2"))
        loss = gc.cross_entropy(nn.dense(h, 10, name="d3"), y)
    tg = nn.training_graph(loss, nn.optim.SGD(0.05), distributed=True)
    step = tg.compile("numba")
    xb = rng.normal(size=(b, 784)).astype(np.float32)
    yb = rng.integers(0, 10, b)
    for _ in range(5):  # compile, allocate, settle
        step(x=xb, y=yb)
    calls.clear()
    times = []
    for _ in range(args.steps):
        w.barrier()  # every rank starts the step together: a step's time is the slowest rank's
        t = time.perf_counter()
        step(x=xb, y=yb)
        times.append(time.perf_counter() - t)
    elements = tg.reduction.elements
    bare = []
    if w.size > 1:
        buf = np.ones(elements, np.float32)
        for _ in range(args.steps):
            w.barrier()
            t = time.perf_counter()
            reduce_(w, buf)
            bare.append(time.perf_counter() - t)
    every = w.allgather({"times": times, "calls": calls, "bare": bare})
    if w.is_root:
        step_s = statistics.median(max(r["times"][i] for r in every) for i in range(args.steps))
        ar = statistics.median(c for r in every for c in r["calls"]) if w.size > 1 else 0.0
        out = {
            "procs": w.size, "batch": b, "step_s": step_s, "allreduce_s": ar, "buffer_mb": elements * 4 / 2**20,
            "bare_allreduce_s": statistics.median(t for r in every for t in r["bare"]) if bare else 0.0,
            "threads": os.environ.get("NUMBA_NUM_THREADS"),
        }  # fmt: skip
        print("@@bench@@ " + json.dumps(out), flush=True)


def launch(n: int, args) -> dict:
    threads = str(args.threads or max(1, (os.cpu_count() or 1) // n))
    env = {**os.environ, "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    mpiexec = Path(sys.executable).parent / "mpiexec"
    worker = [str(Path(__file__).resolve()), "--worker", "--batch", str(args.batch), "--steps", str(args.steps)]
    cmd = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(n), sys.executable, "-m", "mpi4py", *worker]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("@@bench@@ "):
            return json.loads(line.split(" ", 1)[1])
    raise SystemExit(f"{n} processes failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--procs", default="1,2", help="world sizes to run (default 1,2)")
    p.add_argument("--batch", type=int, default=128, help="samples per rank per step (default 128)")
    p.add_argument("--steps", type=int, default=100, help="timed steps (default 100)")
    p.add_argument("--threads", type=int, default=0, help="threads per process (default: cores // processes)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    base = None
    for n in (int(v) for v in args.procs.split(",")):
        r = launch(n, args)
        sps = 1.0 / r["step_s"]
        base = base or sps * r["batch"]
        eff = sps * r["batch"] * n / (n * base)
        share = r["allreduce_s"] / r["step_s"]
        print(f"procs={n} threads_per_proc={r['threads']} batch_per_proc={r['batch']} steps_per_s={sps:.1f} "
              f"samples_per_s={sps * r['batch'] * n:.0f} efficiency={eff:.2f} "
              f"allreduce_ms={r['allreduce_s'] * 1e3:.2f} allreduce_share={share:.1%} buffer_mb={r['buffer_mb']:.2f}",
              flush=True)  # fmt: skip
        if n > 1:
            print(f"# bare Allreduce of {r['buffer_mb']:.2f} MB on {n} ranks: {r['bare_allreduce_s'] * 1e3:.2f} ms "
                  f"({r['buffer_mb'] / r['bare_allreduce_s'] / 1024:.2f} GB/s of buffer)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
