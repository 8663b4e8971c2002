"""A scan's loop driver compiled by graphc itself (numba/driver_source.py, kernel_blas.py): an
LSTM training step compiles and loads without importing Numba and equals the reference; a driver
that does not translate goes through Numba; np.dot is a gemm for every operand layout."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("llvmlite")
from graphc.backends.numba import cache, native  # noqa: E402
from graphc.backends.numba.scan_loop import NativeScan  # noqa: E402

LSTM_STEP = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    from graphc import nn
    from graphc.backends.numba import compile_stats

    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((3, 5, 4)).astype(np.float32)}
    with gc.Graph("lstm_step") as g:
        x = g.input("x", ("batch", 5, 4))
        y, (h, c) = nn.LSTM(6, return_sequences=True, return_state=True)(x)
        loss = gc.sum(y * y) + gc.sum(h * c)
        outs = [loss, *gc.grad(loss, [x, *g.trainable().values()])]
    want = gc.compile(g, "reference", outputs=outs)(feeds)
    step = gc.compile(g, "numba", outputs=outs)
    got = step(feeds)
    err = max(float(np.max(np.abs(a - b) / (1 + np.abs(b)))) for a, b in zip(got, want))
    loops = [s for s in step.summary().splitlines() if ": native loop" in s or ": reference loop" in s]
    print(json.dumps({"stats": compile_stats(), "err": err, "numba": "numba" in sys.modules, "loops": loops}))
""")


def _run(tmp_path, script):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_lstm_training_step_compiles_and_loads_without_numba(tmp_path):
    cold, warm = _run(tmp_path, LSTM_STEP), _run(tmp_path, LSTM_STEP)
    for r in (cold, warm):
        assert r["err"] < 1e-4, r
        assert r["numba"] is False, r  # the drivers, their body kernels and the products: no Numba
        assert len(r["loops"]) == 2 and all("native loop" in s for s in r["loops"]), r["loops"]
    assert cold["stats"]["compiled"] == cold["stats"]["direct"] > 0
    assert warm["stats"]["compiled"] == 0 and warm["stats"]["native"] == cold["stats"]["compiled"]
    drivers = [p for p in (tmp_path / "cache").rglob("gk_*.py") if "scan driver (flat arguments)" in p.read_text()]
    assert len(drivers) == 2  # the forward and the reverse scan's, beside their machine code


def _native_scans(exe):
    return [st.fn for st in exe.runtime().steps if isinstance(getattr(st, "fn", None), NativeScan)]


def test_a_driver_that_does_not_translate_goes_through_numba():
    # a product per batch entry (np.dot of a row of a 3-D view) is outside kernel_ir's subset
    rng = np.random.default_rng(2)
    feeds = {"xs": rng.standard_normal((4, 2, 3, 5)), "h0": rng.standard_normal((2, 3, 5))}
    feeds["u"] = rng.standard_normal((2, 5, 5)) * 0.3
    with gc.Graph("batched_rnn") as g:
        xs, h0 = g.input("xs", (4, 2, 3, 5), "float64"), g.input("h0", (2, 3, 5), "float64")
        u = g.input("u", (2, 5, 5), "float64")
        h_last, hs = gc.scan(lambda h, x: (gc.tanh(h @ u + x), h), h0, xs)
    want = gc.compile(g, "reference", outputs=[h_last, hs])(feeds)
    exe = gc.compile(g, "numba", outputs=[h_last, hs])
    for a, b in zip(exe(feeds), want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    (fn,) = _native_scans(exe)
    assert fn.fallback is None and fn.loop.flat is not None
    assert "np.dot(P0_0[q], P0_1[q], P0_2[q])" in fn.loop.source
    assert not isinstance(fn.loop.driver, native.NativeFunction)  # Numba's dispatcher
    assert hasattr(fn.loop.driver, "py_func")


DOT = """# test: np.dot into its out argument
import numpy as np
from numba import njit


@njit(fastmath={'contract'}, error_model="numpy", nogil=True)
def kernel(a, b, c):
    np.dot(a, b, c)
"""


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_np_dot_gives_the_product_for_every_operand_layout(tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    cache.forget()
    k = cache.kernel(DOT.replace("# test", f"# test {dtype}"))
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((9, 14)).astype(dtype)
    a, b = wide[:5, :7], rng.standard_normal((7, 3)).astype(dtype)
    cases = {
        "row-major": (np.ascontiguousarray(a), b),
        "transposed": (np.asfortranarray(a), np.asfortranarray(b)),
        "blocks of wider matrices": (a, wide[2:9, 4:7]),  # leading dimension 14
        "strided (a plain loop)": (wide[:5, ::2], wide[:7, 1::5]),
        "one row": (a[:1], b),
        "one column": (a, b[:, :1]),
    }
    for name, (x, y) in cases.items():
        out = np.full((x.shape[0], y.shape[1]), np.nan, dtype)
        k.bind((x, y, out))(x, y, out)
        np.testing.assert_allclose(out, x @ y, rtol=1e-5, atol=1e-5, err_msg=name)
    out = np.full((3, 5), np.nan, dtype).T  # a transposed out: the plain loop
    k.bind((a, wide[:7, :3], out))(a, wide[:7, :3], out)
    np.testing.assert_allclose(out, a @ wide[:7, :3], rtol=1e-5, atol=1e-5)
    x, y, out = np.zeros((4, 0), dtype), np.zeros((0, 2), dtype), np.ones((4, 2), dtype)
    k.bind((x, y, out))(x, y, out)
    assert (out == 0).all()  # an empty sum
    assert all(type(f).__name__ == "NativeFunction" for f in k._bound.values())
    cache.forget()


def test_a_steps_small_float32_product_takes_the_register_blocked_kernel(tmp_path, monkeypatch):
    """Few rows by a weight that fits in L2 (kernel_small_gemm.py): full tiles, a row remainder,
    a single vector of columns left over, blocks of wider matrices; and the cases it leaves to
    cblas (too many rows, a transposed operand, columns not a multiple of the vector width)."""
    from graphc.backends.numba import kernel_small_gemm

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    cache.forget()
    k = cache.kernel(DOT.replace("# test", "# test small"))
    lanes = kernel_small_gemm.lanes()
    rng = np.random.default_rng(4)
    wide = rng.standard_normal((400, 600)).astype(np.float32)
    shapes = [(16, 128, 32 * lanes), (13, 37, 3 * lanes), (1, 5, lanes), (9, 300, 5 * lanes), (64, 64, 4 * lanes)]
    for m, kk, n in shapes:
        assert kernel_small_gemm.fits(m, n, kk)
        own = rng.standard_normal((m, kk)).astype(np.float32), rng.standard_normal((kk, n)).astype(np.float32)
        blocks = wide[:m, 3 : 3 + kk], wide[1 : 1 + kk, 7 : 7 + n]  # leading dimension 600
        for x, y in (own, blocks):
            out = np.full((m, n), np.nan, np.float32)
            k.bind((x, y, out))(x, y, out)
            np.testing.assert_allclose(out, x.astype(np.float64) @ y, rtol=1e-4, atol=1e-4, err_msg=str((m, kk, n)))
    from graphc.backends.numba import direct, kernel_ir

    code = direct.find_function(DOT, "kernel", True)
    args = (x, y, out)
    module, _ = kernel_ir.build(code.fn, kernel_ir.arg_types(args), "k", code.helpers, code.flat, code.consts, code.f32)
    assert f'@"{kernel_small_gemm.NAME}"' in str(module)  # the float32 np.dot calls it where it fits
    assert not kernel_small_gemm.fits(65, lanes, 8) and not kernel_small_gemm.fits(8, lanes + 1, 8)
    many_rows = wide[:65, :20], wide[:20, : 2 * lanes]
    transposed = np.asfortranarray(wide[:8, :20]), wide[:20, : 2 * lanes]
    ragged = wide[:8, :20], wide[:20, : lanes + 3]
    for x, y in (many_rows, transposed, ragged):  # cblas
        out = np.full((x.shape[0], y.shape[1]), np.nan, np.float32)
        k.bind((x, y, out))(x, y, out)
        np.testing.assert_allclose(out, x.astype(np.float64) @ y, rtol=1e-4, atol=1e-4)
    cache.forget()
