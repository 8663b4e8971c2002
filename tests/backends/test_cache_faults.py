"""Kernel-cache faults cost a compile, never a failed or a wrong run, and each is counted.

Each test uses a cache folder of its own and forgets the kernels loaded in this process
(`cache.forget()`), so that a compile reads the disk as a new process would.
"""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backends.numba import compile_stats

pytest.importorskip("numba")
from graphc.backends.numba import cache  # noqa: E402  (needs numba)

X = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)
V = np.linspace(1, 2, 5, dtype=np.float32)


def _graph(kind):
    """One elementwise kernel each; 'exp' and 'tanh' take the same arguments, 'affine' more."""
    with gc.Graph(kind) as g:
        x = g.input("x", (3, 5))
        v = g.input("v", (5,))
        if kind == "exp":
            y = gc.exp(x) * 2.0
        elif kind == "tanh":
            y = gc.tanh(x) + 3.0
        else:
            y = x * v + gc.sigmoid(v)
        g.output("y", y)
    return g


def _run(kind):
    """Compile `kind` afresh (as a new process would) and check it against the reference."""
    cache.forget()
    g = _graph(kind)
    exe = gc.compile(g, "numba")
    feeds = {"x": X, "v": V}
    np.testing.assert_allclose(exe(feeds)["y"], gc.run(g, feeds)["y"], rtol=1e-6)
    (k,) = [k for k in exe.kernels if k.source]
    return cache.source_hash(k.source)


def _delta(before):
    after = compile_stats()
    return {k: after[k] - before[k] for k in after}


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder for this test; the kernels it loaded are forgotten afterwards.
    Numba's own entries are under test here, so kernels are not loaded from their native
    entries (those have their faults tested in test_native_kernels.py)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHC_NATIVE_KERNELS", "0")
    cache.forget()
    yield cache.cache_dir()
    cache.forget()


def _machine_code(folder: Path, h: str) -> Path:
    (f,) = (folder / "__pycache__").glob(f"gk_{h}.*.nbc")
    return f


@pytest.mark.parametrize("pair", [("exp", "tanh"), ("exp", "affine")], ids=["same-arity", "other-arity"])
def test_machine_code_swapped_between_kernels_is_refused_and_rewritten(fresh_cache, pair):
    a, b = (_run(k) for k in pair)
    fa, fb = _machine_code(fresh_cache, a), _machine_code(fresh_cache, b)
    da, db = fa.read_bytes(), fb.read_bytes()
    fa.write_bytes(db)
    fb.write_bytes(da)
    before = compile_stats()
    for k in pair:  # before: "kernel expected 5 arguments, got 3", or the other kernel's values
        _run(k)
    d = _delta(before)
    assert d["faults"] == 2 and d["rebuilt"] == 2 and d["compiled"] == 2 and d["loaded"] == 0, d
    assert _machine_code(fresh_cache, a).read_bytes() != db  # its own code written over the foreign one
    before = compile_stats()
    for k in pair:
        _run(k)
    assert _delta(before)["loaded"] == 2 and _delta(before)["faults"] == 0


def test_garbage_machine_code_and_index_are_rebuilt(fresh_cache):
    h = _run("exp")
    for f in (fresh_cache / "__pycache__").glob(f"gk_{h}.*"):
        f.write_bytes(b"\x80garbage")
    before = compile_stats()
    _run("exp")
    d = _delta(before)
    assert d["faults"] == 1 and d["compiled"] == 1, d
    before = compile_stats()
    _run("exp")
    assert _delta(before)["loaded"] == 1


def test_a_directory_in_place_of_the_module_file_compiles_in_memory(fresh_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "other"))
    h = _run("tanh")  # the kernel's name, from another cache
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(fresh_cache.parent))
    (fresh_cache / f"gk_{h}.py").mkdir()
    before = compile_stats()
    msg = rf"cannot write gk_{h}\.py: .*Is a directory.*compiling in memory"
    with pytest.warns(cache.KernelCacheWarning, match=msg):
        _run("tanh")
    d = _delta(before)
    assert d["faults"] == 1 and d["in_memory"] == 1 and d["compiled"] == 1, d
    assert not list(fresh_cache.glob(".tmp-*"))


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_writing_the_module_compiles_in_memory(fresh_cache, monkeypatch):
    monkeypatch.setattr(os, "fdopen", _enospc)
    before = compile_stats()
    with pytest.warns(cache.KernelCacheWarning, match="No space left on device"):
        _run("exp")
    monkeypatch.undo()
    d = _delta(before)
    assert d["faults"] == 1 and d["in_memory"] == 1 and d["compiled"] == 1, d
    assert not list(fresh_cache.iterdir())  # no module, no temporary file left behind


def test_full_disk_writing_the_machine_code_keeps_the_compiled_kernel(fresh_cache, monkeypatch):
    from numba.core.caching import IndexDataCacheFile

    monkeypatch.setattr(IndexDataCacheFile, "_save_data", _enospc)
    before = compile_stats()
    with pytest.warns(cache.KernelCacheWarning, match="cannot write Numba's entry.*No space left on device"):
        _run("affine")
    monkeypatch.undo()
    d = _delta(before)
    assert d["faults"] == 1 and d["compiled"] == 1, d
    before = compile_stats()
    _run("affine")  # the index names a data file that was never written: a miss, then saved
    assert _delta(before)["compiled"] == 1 and _delta(before)["faults"] == 0
    before = compile_stats()
    _run("affine")
    assert _delta(before)["loaded"] == 1


def test_a_cache_folder_that_cannot_be_created_compiles_in_memory(tmp_path, monkeypatch):
    # a path under a regular file cannot be a folder, even for root; nor can the temp fallback
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(cache.tempfile, "gettempdir", lambda: str(tmp_path / "file"))
    cache.forget()
    before = compile_stats()
    with pytest.warns(cache.KernelCacheWarning, match="cannot create the kernel cache folder"):
        _run("exp")
    cache.forget()
    d = _delta(before)
    assert d["in_memory"] == 1 and d["compiled"] == 1 and d["faults"] == 2, d


# A read-only folder, made read-only for root too: an audit hook refuses every write under it
# (EROFS) and records the attempt; `mkdir` of an existing folder fails with EEXIST, as on a
# read-only file system.
READ_ONLY = textwrap.dedent("""
    import errno, json, os, sys, warnings
    ROOT = os.path.realpath(os.environ["GRAPHC_CACHE_DIR"])
    attempts = []
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def under(p):
        try:
            return os.path.realpath(os.fsdecode(p)).startswith(ROOT)
        except TypeError:
            return False

    def hook(event, args):
        if event == "open" and args[0] is not None and under(args[0]):
            mode, flags = args[1] or "", args[2] or 0
            if not (flags & WRITE or any(c in mode for c in "wax+")):
                return
        elif event in ("os.mkdir", "os.rename", "os.link", "os.remove", "os.rmdir", "os.chmod", "os.symlink"):
            if not under(args[0]) and not (event in ("os.rename", "os.link") and under(args[1])):
                return
        else:
            return
        attempts.append(event + " " + os.fsdecode(args[0]))
        if event == "os.mkdir" and os.path.exists(args[0]):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), args[0])
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), args[0])

    if os.environ.get("READ_ONLY"):
        sys.addaudithook(hook)
    import numpy as np
    import graphc as gc
    from graphc.backends.numba import compile_stats
    with gc.Graph("ro") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        g.output("y", gc.softplus(x @ w + 0.125) * 3.0 - gc.sum(x * x, 1, keepdims=True))
        g.output("p", gc.softmax(x, 1))
    feeds = {"x": np.arange(12, dtype=np.float32).reshape(4, 3) / 7}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = gc.compile(g, "numba")(feeds)
    want = gc.run(g, feeds)
    err = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    print(json.dumps({"stats": compile_stats(), "err": err, "attempts": attempts,
                      "warnings": [str(w.message) for w in caught]}))
""")


def _read_only_run(folder, read_only):
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(folder), "READ_ONLY": "1" if read_only else ""}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", READ_ONLY], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_warm_cache_on_a_read_only_folder_is_read_without_a_write(tmp_path):
    folder = tmp_path / "cache"
    first = _read_only_run(folder, read_only=False)
    assert first["stats"]["compiled"] >= 2 and first["err"] < 1e-5
    warm = _read_only_run(folder, read_only=True)
    assert warm["attempts"] == [] and warm["warnings"] == [], warm
    assert warm["stats"]["compiled"] == 0 and warm["stats"]["loaded"] == first["stats"]["compiled"], warm
    assert warm["err"] < 1e-5 and warm["stats"]["faults"] == 0


def test_a_cold_cache_on_a_read_only_folder_compiles_in_memory_with_one_warning(tmp_path):
    folder = tmp_path / "cache"
    (folder / cache.cache_dir().name).mkdir(parents=True)  # this graphc's (empty) folder
    cold = _read_only_run(folder, read_only=True)
    assert cold["attempts"], cold  # the hook did refuse writes
    assert cold["err"] < 1e-5 and cold["stats"]["loaded"] == 0 and cold["stats"]["in_memory"] >= 2, cold
    assert len(cold["warnings"]) == 1 and "Read-only file system" in cold["warnings"][0], cold["warnings"]


def test_tests_outside_backends_compile_into_the_sessions_cache_not_the_users(tmp_path):
    """tests/conftest.py points every test at a session cache (tests/fusion once filled the
    user's ~/.cache/graphc): run a compiling fusion test with an empty HOME and no cache set."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_CACHE_DIR"}
    env["HOME"] = str(tmp_path / "home")
    test = "tests/fusion/test_fusion.py::test_matmul_bias_tanh_compiles_to_one_kernel_matching_the_reference"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    args += ["--basetemp", str(tmp_path / "base")]
    out = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert list((tmp_path / "base" / "graphc-kernel-cache").rglob("gk_*.py"))  # it did compile
    assert not (tmp_path / "home" / ".cache" / "graphc").exists()
