"""What a cold compile costs: kernels graphc compiles itself (numba/direct.py, no Numba import),
each compiled once per process; and kernel_ir computes what Numba computes for the same source."""

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backends.numba import compile_stats

pytest.importorskip("llvmlite")
from graphc.backends.numba import cache, direct, native  # noqa: E402

# a training step of each kind the benchmarks time: dense + relu + softmax cross-entropy, conv +
# max-pool, SGD updates (every kernel of it translates: none needs Numba)
COLD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    from graphc.backends.numba import compile_stats

    def build():
        r = np.random.default_rng(0)
        with gc.Graph("cold") as g:
            x = g.input("x", ("batch", 1, 8, 8))
            y = g.input("y", ("batch",), dtype="int64")
            w = g.param("w", (3, 1, 3, 3), init=r.standard_normal((3, 1, 3, 3)).astype(np.float32))
            v = g.param("v", (27, 5), init=r.standard_normal((27, 5)).astype(np.float32))
            b = g.param("b", (5,), init=np.zeros(5, np.float32))
            h = gc.max_pool2d(gc.relu(gc.conv2d(x, w)), 2)
            logits = gc.relu(gc.reshape(h, (-1, 27)) @ v + b)
            loss = g.output("loss", gc.cross_entropy(logits, y))
            for name, grad in gc.gradients(loss).items():
                g.update(name, g.params[name] - 0.1 * grad)
        return g

    r = np.random.default_rng(1)
    feeds = {"x": r.standard_normal((4, 1, 8, 8)).astype(np.float32), "y": np.array([0, 2, 1, 4])}
    ref, g = build(), build()
    want = gc.run(ref, feeds, apply_updates=True)
    got = gc.compile(g, "numba", apply_updates=True)(feeds)
    err = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    err = max(err, *(float(np.max(np.abs(g.values[k] - ref.values[k]))) for k in ("w", "v", "b")))
    print(json.dumps({"stats": compile_stats(), "err": err, "numba": "numba" in sys.modules}))
""")


def _cold(tmp_path, **env_extra):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"), **env_extra)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", COLD], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_cold_process_compiles_a_training_step_without_importing_numba(tmp_path):
    cold = _cold(tmp_path)
    s = cold["stats"]
    assert cold["err"] < 1e-5 and cold["numba"] is False, cold
    assert s["compiled"] == s["direct"] >= 10 and s["loaded"] == 0 and s["faults"] == 0, s
    warm = _cold(tmp_path)  # what it wrote is what a warm process loads
    assert warm["stats"]["compiled"] == 0 and warm["stats"]["native"] == s["compiled"] and warm["err"] < 1e-5


def test_direct_compiling_can_be_turned_off(tmp_path):
    off = _cold(tmp_path, GRAPHC_DIRECT_KERNELS="0")
    assert off["stats"]["direct"] == 0 and off["stats"]["compiled"] >= 10 and off["numba"] is True, off
    assert off["err"] < 1e-5


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    cache.forget()
    yield cache.cache_dir()
    cache.forget()


def _mlp(name):
    r = np.random.default_rng(0)
    with gc.Graph(name) as g:
        x = g.input("x", ("batch", 6))
        y = g.input("y", ("batch",), dtype="int64")
        w = g.param("w", (6, 4), init=r.standard_normal((6, 4)).astype(np.float32))
        loss = g.output("loss", gc.cross_entropy(gc.tanh(x @ w), y))
        g.update("w", w - 0.1 * gc.grad(loss, w))
    return g


def _delta(before):
    after = compile_stats()
    return {k: after[k] - before[k] for k in after}


def test_a_kernel_is_compiled_once_per_process(fresh_cache):
    feeds = {"x": np.ones((3, 6), np.float32), "y": np.array([0, 1, 3])}
    before = compile_stats()
    gc.compile(_mlp("a"), "numba", apply_updates=True)(feeds)
    first = _delta(before)
    assert first["compiled"] >= 3 and first["compile_s"] > 0, first
    before = compile_stats()
    for name in ("a", "b"):  # the same graph again, and another graph with the same kernels
        gc.compile(_mlp(name), "numba", apply_updates=True)(feeds)
    again = _delta(before)
    assert again["compiled"] == 0 and again["loaded"] == 0 and again["reused"] > 0, again
    assert again["compile_s"] == 0, again  # nothing compiled or loaded: no time counted


def test_a_kernel_that_does_not_translate_goes_through_numba(fresh_cache):
    src = textwrap.dedent("""
        import numpy as np
        from numba import njit


        @njit(parallel=False, fastmath={'contract'}, error_model="numpy", nogil=True)
        def kernel(a0, o0):
            o0[0] = np.sum(a0)
    """)
    with pytest.raises(direct.Unsupported, match="call of np.sum"):
        code = direct.find_function(src, "kernel", True)
        direct.compile_entry(code, "k", "key", [np.ones(3), np.zeros(1)], "k")
    with pytest.raises(direct.Unsupported, match="a parallel kernel"):
        direct.find_function(src.replace("parallel=False", "parallel=True"), "kernel", True)
    before = compile_stats()
    a, o = np.arange(4.0), np.zeros(1)
    cache.kernel(src).bind([a, o])(a, o)
    assert o[0] == 6.0 and _delta(before)["compiled"] == 1 and _delta(before)["direct"] == 0


# -- kernel_ir against Numba, on the same source ------------------------------------------------
SUBSET = textwrap.dedent("""
    import math
    import numpy as np
    from numba import njit, uint64

    _OPTS = dict(fastmath={"contract"}, error_model="numpy", nogil=True)
    _K = (uint64(1), uint64(3))


    @njit(inline="always", **_OPTS)
    def _span(a, b):
        return a // b, a % b


    @njit(**_OPTS)
    def floor_div(x, out):
        for i in range(x.shape[0]):
            q, r = _span(x[i], np.int64(-3))
            out[i, 0], out[i, 1] = q, r
            out[i, 2] = x[i] // 0 + (x[-1 - i] if i < 3 else -x[i])
        return out.shape[0]


    @njit(**_OPTS)
    def unsigned(x, out):
        xf = x
        for j in range(uint64(x.shape[0])):
            for k in _K:
                out[j] += xf[j * k % uint64(x.shape[0])] * (k >> uint64(1))


    @njit(**_OPTS)
    def control(x, lim, out):
        total = 0.0
        n = 0
        for i in range(x.shape[0]):
            v = x[i]
            if v != v:
                continue
            if 0 <= v < lim and not (v == 1.5 or v > 2.5):
                total += v
            n += 1
            while n > 3:
                n -= 2
                break
        out[0] = total
        out[1] = max(n, 1) * np.float32(0.5) + abs(-2)
        return n
""")


def _module():
    mod = types.ModuleType("graphc_test_subset")
    exec(compile(SUBSET, "<subset>", "exec"), mod.__dict__)
    return mod


@pytest.mark.parametrize("name", ["floor_div", "unsigned", "control"])
def test_kernel_ir_computes_what_numba_computes(name):
    x = np.array([7.0, -7.0, 1.5, np.nan, 0.25, 2.0, -1.0, 3.0])
    cases = {
        "floor_div": lambda: [np.array([7, -7, 0, 5, -1, 9], np.int64), np.zeros((6, 3), np.int64)],
        "unsigned": lambda: [np.arange(1.0, 8.0, dtype=np.float32), np.zeros(7, np.float32)],
        "control": lambda: [x.copy(), 2.75, np.zeros(2)],
    }
    mine, theirs = cases[name](), cases[name]()
    r1 = _direct(name, mine)(*mine)
    r2 = getattr(_module(), name)(*theirs)
    assert r1 == r2
    for a, b in zip(mine, theirs):
        np.testing.assert_array_equal(a, b)


def _direct(name, args):
    code = direct.find_function(SUBSET, name, False)
    key = native.type_key(args)
    header, obj, thunk = direct.compile_entry(code, f"test:{name}", key, args, name)
    return native.install(native.entry_header(f"test:{name}", key, header, obj, thunk), obj, thunk)


def test_package_kernels_compiled_directly_match_numba():
    from graphc.backends.numba import conv_kernels as ck

    r = np.random.default_rng(0)
    x = r.standard_normal((2, 3, 9, 8)).astype(np.float32)
    x[0, 1, 2, 3] = np.nan
    g = r.standard_normal((2, 3, 4, 4)).astype(np.float32)
    cases = {
        "im2col": [x, np.zeros((2, 27, 5, 4), np.float32), 3, 3, 2, 2, 1, 1, 1, 1],
        "col2im": [r.standard_normal((2, 27, 5, 4)).astype(np.float32), np.zeros_like(x), 3, 3, 2, 2, 1, 1, 1, 1],
        "max_pool": [x, np.zeros((2, 3, 4, 4), np.float32), 2, 2, 2, 2, 0, 0],
        "max_pool_grad": [x, g, np.zeros_like(x), 3, 3, 2, 2, 1, 1],
        "softmax3": [x.reshape(2, 3, 72), np.zeros((2, 3, 72), np.float32), True],
        "ce_labels": [x.reshape(2, 3, 72), r.integers(-1, 4, (2, 72)), np.zeros((2, 72), np.float32)],
        "ce_labels_grad": [
            x.reshape(2, 3, 72),
            r.integers(-1, 4, (2, 72)),
            r.standard_normal((2, 72)).astype(np.float32),
            np.zeros((2, 3, 72), np.float32),
        ],
    }
    src = Path(ck.__file__).read_text()
    for name, args in cases.items():
        mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        theirs = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        code = direct.find_function(src, name, False)
        key = native.type_key(mine)
        header, obj, thunk = direct.compile_entry(code, f"test:{name}", key, mine, name)
        fn = native.install(native.entry_header(f"test:{name}", key, header, obj, thunk), obj, thunk)
        assert fn(*mine) == cache.adopt(getattr(ck, name))(*theirs), name  # Numba's, in graphc's cache
        for a, b in zip(mine, theirs):
            if isinstance(a, np.ndarray):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)


def test_a_name_is_float32_only_where_the_module_says_so():
    src = textwrap.dedent("""
        import numpy as np
        from numba import njit

        F = np.float64


        @njit(parallel=False, fastmath={'contract'}, error_model="numpy", nogil=True)
        def kernel(a0, o0):
            o0[0] = F(a0[0]) / 3
    """)
    args = [np.ones(1), np.zeros(1)]
    with pytest.raises(direct.Unsupported, match="call of F"):  # Numba compiles it, with F as it is
        direct.compile_entry(direct.find_function(src, "kernel", True), "k", "key", args, "k")
    code = direct.find_function(src.replace("np.float64", "np.float32"), "kernel", True)
    assert direct.compile_entry(code, "k", "key", args, "k")[0]["ret"] == "none"
