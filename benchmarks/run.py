#!/usr/bin/env python
"""Benchmarks: graphc against PyTorch (eager) and JAX (jit) on the same computations.

    python benchmarks/run.py WORKLOAD [WORKLOAD ...]|all [--backend numba] [--peers torch,jax]
                             [--repeats N] [--rounds N]

prints, per system, `WORKLOAD SYSTEM median_ms=… cold_compile_s=… warm_compile_s=… peak_rss_mb=…`
and then a `# WORKLOAD check …` line saying whether the systems computed the same thing
(exit status 1 if not). See benchmarks/README.md for what each number means.

Each system runs in its own subprocesses, twice a round, with a cache directory made for it:
  cold: a fresh process, empty cache -> cold_compile_s (build + compile + first call);
  warm: a fresh process, that cache now filled -> warm_compile_s, then the timed steps
        (median_ms) and the process's peak RSS (peak_rss_mb).
The systems take turns, round by round (--rounds, default 3); a system's figures are the median
of all its rounds' steps, the median of its rounds' compile times and its largest peak RSS.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # `workloads`, and graphc from this checkout

from workloads import WORKLOADS  # noqa: E402

MARK = "@@graphc-bench@@ "
PEERS = ("torch", "jax")
LABELS = {"torch": "torch-eager", "jax": "jax-jit"}
WARMUP = 3  # untimed calls after the first two (allocator, caches, thread pools settle)


# -- the worker: one system, one workload, one process ------------------------------------------
def _import(system):
    if system == "graphc":
        import graphc

        return graphc
    if system == "torch":
        import torch

        torch.set_num_threads(os.cpu_count())
        return torch
    import jax

    jax.config.update("jax_platforms", "cpu")
    return jax


def _summary(value) -> list[float]:
    """A few floats standing for a result: the loss, or samples and the mean of an output."""
    if hasattr(value, "detach"):
        value = value.detach().numpy()
    v = np.asarray(value).ravel()
    if v.size == 1:
        return [float(v[0])]
    return [float(x) for x in v[:: max(1, v.size // 7)]] + [float(np.mean(v, dtype=np.float64))]


def worker(spec: dict) -> dict:
    wl = WORKLOADS[spec["workload"]]
    t = time.perf_counter()
    try:
        mod = _import(spec["system"])
    except ImportError as exc:
        return {"skipped": f"not installed: {exc}"}
    out = {"import_s": time.perf_counter() - t}
    params, data = wl.make(np.random.default_rng(0))
    t = time.perf_counter()
    try:
        if spec["system"] == "graphc":
            step = wl.graphc(mod, spec["backend"], params, data)
        else:
            step = getattr(wl, spec["system"])(mod, params, data)
        first = _summary(step())  # compilation may be lazy: the first call counts as compile time
    except Exception as exc:  # a missing op or backend: report it, measure the others
        return {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    out["compile_s"] = time.perf_counter() - t
    out["probes"] = [first, _summary(step())]  # the second result shows one update's effect
    times = []
    if spec["repeats"] > 0:
        for _ in range(WARMUP):
            step()
        start = time.perf_counter()
        while len(times) < spec["repeats"] and (len(times) < 5 or time.perf_counter() - start < spec["budget_s"]):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    out["times_ms"] = [x * 1e3 for x in times]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


# -- the driver -------------------------------------------------------------------------------------
def _spawn(spec: dict, env: dict, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"skipped": f"worker exited with status {proc.returncode}: {tail}"}


def measure(workload: str, system: str, backend: str, repeats: int, budget_s: float, timeout: float) -> dict:
    """One round for one system: a cold then a warm subprocess sharing a fresh cache directory."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{workload}-{system}-") as cache:
        env = {
            **os.environ,
            "GRAPHC_CACHE_DIR": os.path.join(cache, "graphc"),
            "NUMBA_CACHE_DIR": os.path.join(cache, "numba"),  # any cache=True kernel starts cold too
            # JAX's persistent compilation cache, so its warm compile is measured like graphc's
            "JAX_COMPILATION_CACHE_DIR": os.path.join(cache, "jax"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            "PYTHONWARNINGS": "ignore",
        }
        # Python's bytecode cache on, as in a usual environment: pip wrote the peers' .pyc files
        # at install; graphc's checkout (an editable install) gets its own in its first process
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        spec = {"workload": workload, "system": system, "backend": backend, "repeats": 0, "budget_s": budget_s}
        cold = _spawn(spec, env, timeout)
        if "skipped" in cold:
            return cold
        warm = _spawn({**spec, "repeats": repeats}, env, timeout)
        if "skipped" in warm:
            return warm
    return {
        "median_ms": statistics.median(warm["times_ms"]) if warm["times_ms"] else float("nan"),
        "times_ms": warm["times_ms"],
        "cold_compile_s": cold["compile_s"],
        "warm_compile_s": warm["compile_s"],
        "peak_rss_mb": warm["peak_rss_mb"],
        "cold_peak_rss_mb": cold["peak_rss_mb"],
        "import_s": warm["import_s"],
        "probes": cold["probes"],
        "warm_probes": warm["probes"],
    }


def measure_rounds(workload: str, systems: list, rounds: int, report, **kw) -> dict:
    """`rounds` rounds of `measure`, the systems one after another in each (the order rotated),
    so a slow spell of the machine falls on every system alike; then each system's rounds in one.

    Each round's timed steps run at a stretch in a process of their own (after its warm-up
    calls), as a single round's do: no system's threads sit idle between its steps.
    """
    runs = {s: [] for s in systems}
    for r in range(rounds):
        for system in systems[r % len(systems) :] + systems[: r % len(systems)]:
            if not runs[system] or "skipped" not in runs[system][-1]:
                runs[system].append(measure(workload, system, **kw))
        report(r, {s: rs[-1] for s, rs in runs.items()})
    return {s: _combine(rs) for s, rs in runs.items()}


def _combine(rounds: list) -> dict:
    """One system's rounds as one result: the median of all their timed steps, the median of each
    compile time (the lower middle value for an even count), the largest peak RSS; each round's
    own figures kept under `rounds`."""
    bad = [r for r in rounds if "skipped" in r]
    if bad:
        return bad[0]
    times = [t for r in rounds for t in r["times_ms"]]
    mid = statistics.median_low
    return {
        "median_ms": statistics.median(times) if times else float("nan"),
        "min_ms": min(times, default=float("nan")),
        "steps": len(times),
        "cold_compile_s": mid(r["cold_compile_s"] for r in rounds),
        "warm_compile_s": mid(r["warm_compile_s"] for r in rounds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "cold_peak_rss_mb": max(r["cold_peak_rss_mb"] for r in rounds),
        "import_s": mid(r["import_s"] for r in rounds),
        "probes": rounds[0]["probes"],
        "warm_probes": rounds[0]["warm_probes"],
        "round_probes": [[r["probes"], r["warm_probes"]] for r in rounds],
        "rounds": rounds,
    }


def _g(values) -> str:
    return "[" + ", ".join(f"{v:.7g}" for v in values) + "]"


def _close(a, b, rtol, atol) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def check(wl, results: dict) -> tuple[bool, str]:
    """Do all measured systems (and each system's cold and warm runs, in every round) compute the same thing?

    Training: the first loss (same weights, same batch) to 2e-5, and the change of the loss over
    one SGD step (which tests the gradients and the update) to 0.5%; float32 rounding moves them
    about 1e-7 and 5e-5. Inference: sampled outputs and their mean to 1e-5.
    """
    ok = {s: r for s, r in results.items() if "probes" in r}
    if not ok:
        return False, "nothing ran"
    problems = []
    for s, r in ok.items():
        for i, pair in enumerate(r.get("round_probes", [[r["probes"], r["warm_probes"]]])):
            for what, got in zip(("cold", "warm"), pair):
                if not all(_close(a, b, 1e-5, 1e-6) for a, b in zip(r["probes"], got)):
                    first, other = (" then ".join(map(_g, p)) for p in (r["probes"], got))
                    problems.append(
                        f"{s} gives different results {what} in round {i + 1} ({other}) and cold in round 1 ({first})"
                    )
    base_name, base = next(iter(ok.items()))
    (a0,), (a1,) = base["probes"] if wl.TRAINING else ([0.0], [0.0])
    for s, r in ok.items():
        if wl.TRAINING:
            (b0,), (b1,) = r["probes"]
            if not _close([b0], [a0], 2e-5, 1e-6):
                problems.append(f"first loss {s} {b0:.6f} vs {base_name} {a0:.6f}")
            if not _close([b1 - b0], [a1 - a0], 5e-3, 2e-6):
                problems.append(f"loss change over one step {s} {b1 - b0:.6g} vs {base_name} {a1 - a0:.6g}")
        elif not _close(r["probes"][0], base["probes"][0], 1e-5, 1e-6):
            problems.append(f"output {s} {_g(r['probes'][0])} vs {base_name} {_g(base['probes'][0])}")
    if problems:
        return False, "FAILED: " + "; ".join(problems)
    what = f"loss {a0:.5f} -> {a1:.5f} after one step" if wl.TRAINING else "outputs agree"
    return True, f"ok ({', '.join(ok)}: {what})"


def _fmt(workload: str, system: str, r: dict) -> str:
    if "skipped" in r:
        return f"{workload} {system} skipped ({r['skipped']})"
    return (f"{workload} {system} median_ms={r['median_ms']:.3f} cold_compile_s={r['cold_compile_s']:.3f} "
            f"warm_compile_s={r['warm_compile_s']:.3f} peak_rss_mb={r['peak_rss_mb']:.1f}")  # fmt: skip


def _round_printer(workload: str, labels: dict, rounds: int):
    """Prints, after each round, a comment line with every system's median step of that round."""

    def report(r: int, last: dict):
        if rounds < 2:
            return
        cells = [
            f"{label} {'skipped' if 'skipped' in last[s] else format(last[s]['median_ms'], '.3f')}"
            for label, s in labels.items()
        ]
        print(f"# {workload} round {r + 1}/{rounds} median_ms: " + ", ".join(cells), flush=True)

    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workload", nargs="+", choices=[*WORKLOADS, "all"], help="one or more workloads, or all")
    ap.add_argument(
        "--backend", default="numba", help="graphc backend (default: numba; cuda: graphc's kernels on the GPU)"
    )
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of torch,jax ('' for none)")
    ap.add_argument("--repeats", type=int, default=None, help="timed steps (default: per workload)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every system's cold and warm processes, interleaved (default 3)",
    )
    ap.add_argument("--budget", type=float, default=10.0, help="stop timing a system after this many seconds per round")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before a worker process is abandoned")
    ap.add_argument("--json", help="also write every measurement (all steps, probes) to this file")
    args = ap.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")

    names = list(WORKLOADS) if "all" in args.workload else list(dict.fromkeys(args.workload))
    report, all_ok = {}, True
    for name in names:
        wl = WORKLOADS[name]
        repeats = wl.REPEATS if args.repeats is None else args.repeats
        labels = {LABELS.get(s, f"graphc-{args.backend}"): s for s in ["graphc", *peers]}
        by_system = measure_rounds(
            name,
            list(labels.values()),
            args.rounds,
            _round_printer(name, labels, args.rounds),
            backend=args.backend,
            repeats=repeats,
            budget_s=args.budget,
            timeout=args.timeout,
        )
        results = {label: by_system[system] for label, system in labels.items()}
        for label, r in results.items():
            print(_fmt(name, label, r), flush=True)
        ok, msg = check(wl, results)
        all_ok &= ok
        print(f"# {name} check {msg}", flush=True)
        report[name] = results
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    for line in ratio_table(report):
        print(line)
    return 0 if all_ok else 1


RATIOS = (("median_ms", "step, ms"), ("cold_compile_s", "cold compile, s"), ("warm_compile_s", "warm start, s"))
RATIOS += (("peak_rss_mb", "peak RSS, MB"),)


def ratio_table(report: dict) -> list[str]:
    """The run as one markdown table: per workload and measure, each system's figure and graphc's
    over the best peer's (lower is better for every measure)."""
    systems = list(dict.fromkeys(s for results in report.values() for s in results))
    if len(systems) < 2:
        return []
    lines = ["", "| workload | " + " | ".join(systems) + " | graphc / best peer |", "|---" * (len(systems) + 2) + "|"]
    for name, results in report.items():
        for key, what in RATIOS:
            vals = [results.get(s, {}).get(key) for s in systems]
            if vals[0] is None:
                continue
            peers = [v for v in vals[1:] if v is not None and v == v]
            ratio = f"{vals[0] / min(peers):.2f}" if peers and min(peers) > 0 else "-"
            cells = ["-" if v is None else f"{v:.3g}" for v in vals]
            lines.append(f"| {name} {what} | " + " | ".join(cells) + f" | {ratio} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(MARK + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    else:
        sys.exit(main())
