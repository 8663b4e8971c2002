"""Kernels loaded as machine code without Numba (numba/native.py): a warm process compiles
nothing and never imports Numba; a bad native entry costs a compile, never a wrong run."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backends.numba import compile_stats

pytest.importorskip("numba")
pytest.importorskip("llvmlite")
from graphc.backends.numba import cache, native, native_entries  # noqa: E402  (needs numba)

# a small training step with every kind of kernel the warm path loads: fused elementwise and
# reduction loops, conv + pooling (im2col, col2im, max-pool and its gradient), softmax rows,
# label cross-entropy and the SGD updates
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    from graphc.backends.numba import compile_stats

    def build():
        r = np.random.default_rng(0)
        with gc.Graph("warm") as g:
            x = g.input("x", ("batch", 1, 6, 6))
            y = g.input("y", ("batch",), dtype="int64")
            w = g.param("w", (2, 1, 3, 3), init=r.standard_normal((2, 1, 3, 3)).astype(np.float32))
            v = g.param("v", (8, 3), init=r.standard_normal((8, 3)).astype(np.float32))
            h = gc.max_pool2d(gc.relu(gc.conv2d(x, w)), 2)
            logits = gc.reshape(h, (-1, 8)) @ v
            loss = g.output("loss", gc.cross_entropy(logits, y))
            g.output("p", gc.softmax(logits, axis=1))
            for name, grad in gc.gradients(loss).items():
                g.update(name, g.params[name] - 0.1 * grad)
        return g

    r = np.random.default_rng(1)
    feeds = {"x": r.standard_normal((3, 1, 6, 6)).astype(np.float32), "y": np.array([0, 2, 1])}
    ref, g = build(), build()
    want = gc.run(ref, feeds, apply_updates=True)
    got = gc.compile(g, "numba", apply_updates=True)(feeds)
    err = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    err = max(err, *(float(np.max(np.abs(g.values[k] - ref.values[k]))) for k in ("w", "v")))
    print(json.dumps({"stats": compile_stats(), "err": err, "numba": "numba" in sys.modules}))
""")


def _run_script(env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_warm_process_compiles_nothing_and_does_not_import_numba():
    first = _run_script()  # the session's cache: compiles what earlier tests have not
    assert first["err"] < 1e-5
    warm = _run_script()
    assert warm["err"] < 1e-5
    assert warm["stats"]["compiled"] == 0 and warm["stats"]["faults"] == 0, warm
    assert warm["stats"]["native"] == warm["stats"]["loaded"] >= 8, warm
    assert warm["numba"] is False


def test_the_native_path_can_be_turned_off():
    _run_script()
    # the kernels graphc compiled itself (direct.py) have only native entries: Numba compiles
    # those the first time the native path is off, and loads them from its own entries after
    _run_script({"GRAPHC_NATIVE_KERNELS": "0"})
    off = _run_script({"GRAPHC_NATIVE_KERNELS": "0"})
    assert off["stats"]["native"] == 0 and off["stats"]["compiled"] == 0 and off["numba"] is True, off
    assert off["err"] < 1e-5


X = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)


def _graph(kind):
    with gc.Graph(kind) as g:
        x = g.input("x", (3, 5))
        g.output("y", gc.exp(x) * 2.0 if kind == "exp" else gc.tanh(x) + 3.0)
    return g


def _run(kind):
    """Compile `kind` afresh (as a new process would) and check it against the reference."""
    cache.forget()
    g = _graph(kind)
    np.testing.assert_allclose(gc.compile(g, "numba")({"x": X})["y"], gc.run(g, {"x": X})["y"], rtol=1e-6)


def _delta(before):
    after = compile_stats()
    return {k: after[k] - before[k] for k in after}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    cache.forget()
    yield cache.cache_dir() / "native"
    cache.forget()


def _entries(folder: Path) -> set:
    return set(folder.glob("nk_*.bin"))


def _entry_of(folder: Path, kind: str) -> Path:
    before = _entries(folder)
    _run(kind)
    (new,) = _entries(folder) - before
    return new


def test_entries_are_written_once_and_loaded(fresh_cache):
    before = compile_stats()
    e = _entry_of(fresh_cache, "exp")
    assert e.read_bytes().startswith(native.MAGIC) and _delta(before)["compiled"] == 1
    before = compile_stats()
    _run("exp")
    d = _delta(before)
    assert d["native"] == 1 and d["loaded"] == 1 and d["compiled"] == 0 and d["faults"] == 0, d
    assert not list(fresh_cache.glob(".tmp-*"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "flipped byte"])
def test_a_damaged_entry_is_refused_rebuilt_and_rewritten(fresh_cache, damage):
    e = _entry_of(fresh_cache, "exp")
    data = e.read_bytes()
    bad = {
        "garbage": b"\x80garbage",
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "flipped byte": data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:],
    }[damage]
    e.write_bytes(bad)
    before = compile_stats()
    _run("exp")  # Numba loads its own entry and the native entry is written again
    d = _delta(before)
    assert d["faults"] == 1 and d["rebuilt"] == 1 and d["native"] == 0, d
    assert e.read_bytes() == data
    before = compile_stats()
    _run("exp")
    assert _delta(before)["native"] == 1 and _delta(before)["faults"] == 0


def test_entries_swapped_between_kernels_are_refused(fresh_cache):
    a, b = _entry_of(fresh_cache, "exp"), _entry_of(fresh_cache, "tanh")
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    before = compile_stats()
    _run("exp")  # before the check: tanh's code, run for exp, would give tanh's values
    _run("tanh")
    d = _delta(before)
    assert d["faults"] == 2 and d["native"] == 0, d
    assert (a.read_bytes(), b.read_bytes()) == (da, db)


def test_an_entry_for_another_cpu_is_not_loaded(fresh_cache, monkeypatch):
    e = _entry_of(fresh_cache, "exp")
    monkeypatch.setattr(native_entries, "_MACHINE", "some-other-cpu|+avx512f")
    with pytest.raises(native.BadEntry, match="another CPU"):
        native.read(e, *_id_and_key(e))


def _id_and_key(entry: Path):
    data = entry.read_bytes()
    n = int.from_bytes(data[len(native.MAGIC) : len(native.MAGIC) + 4], "little")
    head = json.loads(data[len(native.MAGIC) + 4 : len(native.MAGIC) + 4 + n])
    return head["kernel"], head["types"]


def test_type_key_follows_numbas_typing():
    from numba import typeof

    a = np.zeros((4, 6), np.float32)
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    views = [a, a.T, a[:, ::2], np.zeros((2, 2, 2)), np.zeros(3, np.int64), np.zeros((2, 2), bool), ro]
    keys = [native.type_key([v]) for v in views]
    assert len(set(keys)) == len(keys)  # distinct Numba types, distinct keys
    for v, k in zip(views, keys):
        t = typeof(v)
        assert k == f"a{v.dtype.str}{t.ndim}{t.layout}{'w' if t.mutable else 'r'}{'a' if t.aligned else 'u'}"
    assert native.type_key([3, True, 2.5]) == "i,b,d"
    assert native.type_key([1 << 70]) is None and native.type_key(["text"]) is None


def test_float_sums_vectorise_into_partial_sums(fresh_cache):
    """The accumulator of a sum over the innermost dim adds through vmath.radd, which LLVM may
    reassociate: the loop is vectorised (a strict float64 chain was one add per 4 cycles)."""
    r = np.random.default_rng(0)
    with gc.Graph("sum") as g:
        x = g.input("x", (6, 1000))
        g.output("s", gc.sum(gc.relu(x) * 2.0, axis=1))
    feeds = {"x": r.standard_normal((6, 1000)).astype(np.float32)}
    exe = gc.compile(g, "numba")
    got = exe(feeds)["s"]
    want = (np.maximum(feeds["x"], 0).astype(np.float64) * 2.0).sum(axis=1)
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=2e-7)
    (k,) = [k for k in exe.kernels if k.source]
    disp = cache.kernel(k.source).dispatcher()
    ensure = cache.ensure_compiled
    args = (6, 1000, feeds["x"], np.empty((6, 1), np.float32), np.empty(6, np.float32))
    ensure(disp, args)
    ir = disp.inspect_llvm(disp.signatures[0])
    assert re.search(r"fadd [a-z ]*reassoc[a-z ]*<\d+ x double>", ir), "the sum's adds are not vectorised"


def test_helper_code_may_define_graphc_symbols_only():
    # a helper shares the engine with every kernel: its `log` would be what kernels call for libm's
    from graphc.backends.numba import native

    for text in ("define double @log(double %x) {\n  ret double %x\n}\n", "@count = global i64 0\n"):
        with pytest.raises(ValueError, match="graphc_ symbols only"):
            native.add_ir(text, [], {})
    ok = "define i64 @graphc_test_seven() {\n  ret i64 7\n}\n"
    assert native.add_ir(ok, ["graphc_test_seven"], {})["graphc_test_seven"]
