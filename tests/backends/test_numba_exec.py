"""The Numba executable: disk cache across processes, specialisation, memory plan, errors."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.backends.plan import OutputPool, Step, plan_memory

pytest.importorskip("numba")

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    from graphc.backends.numba import compile_stats
    with gc.Graph("cachetest") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        g.output("y", gc.softplus(x @ w + 0.125) * 3.0 - gc.sum(x * x, 1, keepdims=True))
    exe = gc.compile(g, "numba")
    y = exe(x=np.arange(12, dtype=np.float32).reshape(4, 3) / 7)["y"]
    ref = gc.run(g, {"x": np.arange(12, dtype=np.float32).reshape(4, 3) / 7})["y"]
    print(json.dumps({"stats": compile_stats(), "err": float(np.max(np.abs(y - ref)))}))
""")


def _run(tmp_path, env_dir, numba_dir=None, direct=True):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    if not direct:  # every kernel through Numba, whose entries are under test
        env["GRAPHC_DIRECT_KERNELS"] = "0"
    env["GRAPHC_CACHE_DIR"] = str(env_dir)
    if numba_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_dir)
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("numba_cache_dir", [False, True], ids=["default", "NUMBA_CACHE_DIR"])
def test_second_process_reuses_disk_cache_and_survives_corruption(tmp_path, numba_cache_dir):
    # graphc keeps Numba's entries for its kernels in its own folder, whatever NUMBA_CACHE_DIR
    # (which many Numba users set) says: its recovery and clean-up find them there
    cache = tmp_path / "cache"
    numba_dir = tmp_path / "numba" if numba_cache_dir else None

    def run():
        return _run(tmp_path, cache, numba_dir, direct=False)

    first = run()
    assert first["stats"]["compiled"] >= 2 and first["err"] < 1e-5
    second = run()
    assert second["stats"]["compiled"] == 0, second
    assert second["stats"]["loaded"] == first["stats"]["compiled"]
    assert second["err"] < 1e-5
    # corrupt every compiled entry (Numba's and the native ones) and one generated module:
    # rebuilt, never a crash
    files = sorted(cache.rglob("*.nb*"))
    assert files and sorted(cache.rglob("native/nk_*.bin"))
    files += sorted(cache.rglob("native/nk_*.bin"))
    if numba_dir is not None:
        assert not list(numba_dir.rglob("*.nb*"))
    for f in files:
        f.write_bytes(b"\x80garbage")
    mod = sorted(cache.rglob("gk_*.py"))[0]
    mod.write_text("def kernel(:\n")
    third = run()
    assert third["err"] < 1e-5 and third["stats"]["rebuilt"] >= 1 and third["stats"]["faults"] >= 1
    fourth = run()
    assert fourth["stats"]["compiled"] == 0 and fourth["err"] < 1e-5


def test_two_processes_compiling_at_once(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]  # fmt: skip
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0 and json.loads(out.splitlines()[-1])["err"] < 1e-5
    assert not list(cache.rglob(".tmp-*"))
    assert _run(tmp_path, cache)["stats"]["compiled"] == 0


def _graph():
    with gc.Graph("g") as g:
        x = g.input("x", ("batch", 4))
        w = g.param("w", (4, 3))
        y = gc.tanh(x @ w)
        g.output("y", y)
        g.output("s", gc.sum(y))
        g.update("w", w - 0.1 * gc.grad(gc.sum(y * y), w))
    return g


def test_bad_inputs_raise_the_reference_errors():
    g = _graph()
    exe = gc.compile(g, "numba")
    ref = gc.compile(g, "reference")
    bad = [
        {"x": np.zeros((2, 5), np.float32)},
        {"x": np.full((2, 4), 1e39)},  # does not fit float32
        {"x": np.zeros((2, 4)), "z": 1},
        {},
        {"x": np.zeros(4, np.float32)},
    ]
    for feeds in bad:
        with pytest.raises(gc.InputError) as want:
            ref(feeds)
        with pytest.raises(gc.InputError) as got:
            exe(feeds)
        assert str(got.value) == str(want.value)


def test_shapes_specialise_outputs_do_not_alias_and_updates_are_in_place():
    g, gr = _graph(), _graph()
    exe, ref = gc.compile(g, "numba"), gc.compile(gr, "reference")
    w = g.values["w"]
    rng = np.random.default_rng(1)
    kept = []
    for n in (3, 5, 3, 1, 5):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        a, b = exe(x=x), ref(x=x)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)
        kept.append((a, b))
    assert len(exe.runtimes) == 3  # batch 3, 5, 1
    for a, b in kept:  # earlier results were not overwritten by later calls
        np.testing.assert_allclose(a["y"], b["y"], rtol=1e-5, atol=1e-6)
    assert g.values["w"] is w  # the parameter array itself was updated
    np.testing.assert_allclose(g.values["w"], gr.values["w"], rtol=1e-5, atol=1e-6)
    schedule = exe.runtimes[(("batch", 3),)].schedule
    assert schedule.inplace_updates == {"w": exe.graph.updates["w"].id}


def test_replaced_parameter_array_is_picked_up():
    g = _graph()
    exe = gc.compile(g, "numba")
    x = np.ones((2, 4), np.float32)
    exe(x=x)
    g.values["w"] = np.zeros((4, 3), np.float32)
    np.testing.assert_array_equal(exe(x=x)["y"], 0.0)


def test_memory_plan_reuses_dead_buffers_and_in_place():
    steps = [Step([0], [1]), Step([1], [2], {2: [1]}), Step([2], [3]), Step([3], [4])]
    nb = {1: 100, 2: 100, 3: 100, 4: 50}
    p = plan_memory(steps, nb, keep=[4])
    assert p.buffer_of[2] == p.buffer_of[1]  # in place: 1 dies where 2 is written
    assert p.buffer_of[3] != p.buffer_of[2]  # a step never writes over what it reads
    assert p.buffer_of[4] == p.buffer_of[2]  # 2 is dead after step 2
    assert len(p.sizes) == 2
    # a view keeps its base alive
    steps = [Step([], [1]), Step([1], []), Step([1], [2]), Step([5], [3])]
    p = plan_memory(steps, {1: 10, 2: 10, 3: 10}, alias={5: 1})
    assert p.buffer_of[3] != p.buffer_of[1]


def test_output_pool_hands_out_free_arrays_only():
    pool = OutputPool((3,), "float32")
    a = pool.get()
    b = pool.get()
    assert a is not b
    del a
    c = pool.get()
    assert c is not b and len(pool.arrays) == 2
