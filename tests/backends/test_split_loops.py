"""A large elementwise kernel split over the cores by graphc (numba/steps.py SplitLoopKernel)
instead of Numba's prange: the values against the reference interpreter, the parts on graphc's
native team, and a process that runs one without importing Numba."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba import blas, loops, team  # noqa: E402
from graphc.backends.numba.steps import SplitLoopKernel  # noqa: E402

ROWS, COLS = 1031, 1025  # over loops.PAR_MIN elements, ragged


def _graph():
    with gc.Graph("big") as g:
        x = g.input("x", ("batch", COLS))
        col = g.input("col", ("batch", 1))  # broadcast along dim 1: sliced with the rows
        row = g.param("row", (COLS,), init=np.linspace(-1, 1, COLS).astype(np.float32))  # broadcast along dim 0
        y = g.output("y", gc.sigmoid(x * 1.5 + row) * gc.tanh(x) + 0.5 * x * col)
    return g, y


def _feeds(seed, rows=ROWS):
    r = np.random.default_rng(seed)
    x = (r.standard_normal((rows, COLS)) * 4).astype(np.float32)
    return {"x": x, "col": r.standard_normal((rows, 1)).astype(np.float32)}


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_large_loop_is_split_by_graphc_and_computes_the_reference(threads, monkeypatch):
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", threads)
    g, y = _graph()
    exe = gc.compile(g, "numba", outputs=[y])
    ref = gc.compile(g, "reference", outputs=[y])
    before = team.STATS["tasks"]
    for seed in range(3):
        f = _feeds(seed)
        np.testing.assert_allclose(exe(f)[0], ref(f)[0], rtol=3e-6, atol=3e-6)
    (rt,) = exe.runtimes.values()
    assert [type(st) for st in rt.steps] == [SplitLoopKernel]
    assert ROWS * COLS >= loops.PAR_MIN
    ran_on_team = team.STATS["tasks"] > before
    assert ran_on_team == (threads == "2" and blas.cores() > 1 and team.team() is not None)
    small = _feeds(5, rows=3)  # 3 rows: under PAR_MIN, a plain loop kernel in its own specialisation
    np.testing.assert_allclose(exe(small)[0], ref(small)[0], rtol=3e-6, atol=3e-6)


def test_a_process_running_large_loops_does_not_import_numba(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        import graphc as gc
        with gc.Graph("big") as g:
            x = g.input("x", (2048, 1024))
            y = g.output("y", gc.exp(x * 0.5) + x)
            m = g.output("m", gc.mean(x * x, axis=1))  # a reduction keeping its outer dim
        v = np.random.default_rng(0).standard_normal((2048, 1024)).astype(np.float32)
        got, mean = gc.compile(g, "numba", outputs=[y, m])(x=v)
        err = float(np.max(np.abs(got - (np.exp(v * 0.5) + v)) / (1 + np.abs(v))))
        err = max(err, float(np.max(np.abs(mean - (v * v).mean(axis=1)))))
        print(json.dumps({"err": err, "numba": "numba" in sys.modules}))
    """)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"), GRAPHC_BLAS_THREADS="2")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    for _ in range(2):  # cold, then warm from the cache the first wrote
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["err"] < 1e-5 and got["numba"] is False, got


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("reduce", ["sum_rows", "mean_last", "max_middle"])
def test_a_large_reduction_that_keeps_its_outer_dim_is_split_by_rows(reduce, threads, monkeypatch):
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", threads)
    shape = (64, 130, 129)  # over PAR_MIN elements
    with gc.Graph("red") as g:
        x = g.input("x", ("batch", 130, 129))
        h = gc.tanh(x) * 2.0  # a producer in the loop nest
        y = {
            "sum_rows": lambda: gc.sum(h, axis=(1, 2)),
            "mean_last": lambda: gc.mean(h, axis=2),
            "max_middle": lambda: gc.max(h, axis=1),
        }[reduce]()
        out = g.output("y", y)
    exe = gc.compile(g, "numba", outputs=[out])
    ref = gc.compile(g, "reference", outputs=[out])
    for seed in range(2):
        v = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(exe(x=v)[0], ref(x=v)[0], rtol=2e-5, atol=2e-5)
    (rt,) = exe.runtimes.values()
    assert any(isinstance(st, SplitLoopKernel) for st in rt.steps)


def test_a_split_loop_over_a_transposed_input_and_an_in_place_update(monkeypatch):
    """Strided (uncollapsed) arguments are sliced as they are; an update written into the
    variable's own array is split like any output."""
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "2")
    r = np.random.default_rng(3)
    w0 = r.standard_normal((1100, 1000)).astype(np.float32)
    with gc.Graph("sgd") as g:
        x = g.input("x", (1000, 1100))
        w = g.param("w", (1100, 1000), init=w0)
        loss = g.output("loss", gc.sum(gc.transpose(x) * w))  # d loss / d w = x^T: a strided read
        g.update("w", w - 0.5 * gc.gradients(loss)["w"])
    exe = gc.compile(g, "numba", outputs=[loss], apply_updates=True)
    v = r.standard_normal((1000, 1100)).astype(np.float32)
    got = exe(x=v)[0]
    np.testing.assert_allclose(got, np.sum(v.T.astype(np.float64) * w0), rtol=1e-4)
    np.testing.assert_allclose(g.values["w"], w0 - 0.5 * v.T, rtol=1e-6, atol=1e-6)
    (rt,) = exe.runtimes.values()
    assert any(isinstance(st, SplitLoopKernel) for st in rt.steps)
