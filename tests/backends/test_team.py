"""graphc's native worker team (numba/team.py): parts handed to workers that hold no GIL."""

import ctypes
import os
import threading
import time

import numpy as np
import pytest

from graphc.backends.numba import accumulate, batch_split, blas, native, team
from graphc.backends.numba.native import KernelFailed, NativeTask

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the team needs two cores")

_STATUS = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def _team():
    t = team.team()
    if t is None:
        pytest.skip("no native code for the team on this machine")
    return t


def _gemm_blocks(a, b, out, parts, dtype):
    """The row blocks of out = a @ b as gemm tasks (C-ordered operands)."""
    address, bits = native.blas_function(dtype)
    m, k = a.shape
    n = b.shape[1]
    tasks = []
    for i in range(parts):
        r0, r1 = m * i // parts, m * (i + 1) // parts
        operands = (a[r0:].ctypes.data, k, b.ctypes.data, n, 0.0, out[r0:].ctypes.data, n)
        args = (101, 111, 111, r1 - r0, n, k, 1.0, *operands)  # row-major, no transposes
        tasks.append(team.gemm_task(address, bits, dtype, args))
    return tasks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_blocks_on_the_team_give_numpys_product(dtype):
    t = _team()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((301, 37)).astype(dtype), rng.standard_normal((37, 129)).astype(dtype)
    out = np.full((301, 129), np.nan, dtype)
    tasks = _gemm_blocks(a, b, out, 2, accumulate._DTYPES[np.dtype(dtype)])
    before = team.STATS["tasks"]
    assert t.run(tasks)
    assert team.STATS["tasks"] == before + 1  # the second block ran on a worker
    np.testing.assert_allclose(out, a @ b, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)


def test_a_worker_that_slept_takes_the_next_task():
    t = _team()
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((64, 16)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32)
    out = np.zeros((64, 32), np.float32)
    assert t.run(_gemm_blocks(a, b, out, 2, "f32"))
    deadline = time.monotonic() + 5.0
    while not t.asleep[0] and time.monotonic() < deadline:  # idle longer than a worker polls
        time.sleep(team.IDLE_S * 5)
    assert t.asleep[0]  # it left its loop and waits on its condition
    out[...] = np.nan
    assert t.run(_gemm_blocks(a, b, out, 2, "f32"))  # posted to a sleeping worker: woken
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def _status_task(status: int, ran: list):
    """A task whose function (a ctypes callback: it takes the GIL itself) returns `status`."""

    def fn(block, arrays, ret):
        ran.append(threading.get_ident())
        return status

    cb = _STATUS(fn)

    def finish(s):
        if s != 0:
            raise KernelFailed(f"status {s}")

    return NativeTask(ctypes.cast(cb, ctypes.c_void_p).value, 0, None, 0, cb, finish)


def test_a_failed_part_raises_on_the_caller_after_every_part_is_done():
    t = _team()
    ran = []
    with pytest.raises(KernelFailed, match="status 7"):
        t.run([_status_task(0, ran), _status_task(7, ran)])
    assert len(ran) == 2 and threading.get_ident() in ran and len(set(ran)) == 2  # here and on a worker


def test_an_error_in_the_callers_part_waits_for_the_workers_first():
    t = _team()
    ran = []
    slow = _status_task(0, ran)

    def fail():
        raise ValueError("the caller's part")

    with pytest.raises(ValueError, match="caller's part"):
        t.run([fail, slow])
    assert len(ran) == 1  # the worker's part ran to its end before run returned


def test_a_team_in_use_leaves_the_split_to_the_thread_pool():
    t = _team()
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((64, 16)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32)
    out = np.zeros((64, 32), np.float32)
    tasks = _gemm_blocks(a, b, out, 2, "f32")
    with t.lock:  # another thread's split holds it
        assert not t.run(tasks)
        before = team.STATS["tasks"]
        batch_split.in_parallel(tasks)  # the pool runs the same native tasks
        assert team.STATS["tasks"] == before
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def test_a_worker_on_the_callers_core_moves_to_another():
    t = _team()
    ran = []
    here = team._getcpu()
    if here < 0:
        pytest.skip("sched_getcpu is not available")
    t.slots[0, team.WANTED] = here  # as if the worker had been put on the caller's core
    assert t.run([_status_task(0, ran), _status_task(0, ran)])
    assert t.slots[0, team.PINNED] == t.slots[0, team.WANTED] != here


def test_products_in_own_threads_run_on_the_team():
    _team()
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((512, 256)).astype(np.float32), rng.standard_normal((256, 384)).astype(np.float32)
    out = np.zeros((512, 384), np.float32)
    saved = blas.own_threads, blas.large
    blas.own_threads, blas.large = True, 2
    try:
        before = team.STATS["tasks"]
        assert accumulate.gemm(out, a, b, 1.0, 0.0)
        assert team.STATS["tasks"] == before + 1
    finally:
        blas.own_threads, blas.large = saved
        blas.restore()
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)


def test_graphc_team_0_turns_it_off(monkeypatch):
    monkeypatch.setenv("GRAPHC_TEAM", "0")
    assert team.team() is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_makes_a_team_of_its_own():
    parent = _team()
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((64, 16)).astype(np.float32), rng.standard_normal((16, 32)).astype(np.float32)
    out = np.zeros((64, 32), np.float32)
    pid = os.fork()
    if pid == 0:  # the child: its team has threads of its own
        code = 1
        try:
            child = team.team()
            ok = child is not parent and child.run(_gemm_blocks(a, b, out, 2, "f32"))
            code = 0 if ok and np.allclose(out, a @ b, rtol=1e-5, atol=1e-5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


_CHILD = """
import numpy as np
from graphc.backends.numba import native, team
t = team.team()
a = np.arange(64 * 16, dtype=np.float32).reshape(64, 16) / 100
b = np.ones((16, 32), np.float32)
out = np.zeros((64, 32), np.float32)
address, bits = native.blas_function("f32")
tasks = [team.gemm_task(address, bits, "f32", (101, 111, 111, 32, 32, 16, 1.0, a[r:].ctypes.data, 16, b.ctypes.data,
                                               32, 0.0, out[r:].ctypes.data, 32)) for r in (0, 32)]
assert t.run(tasks) and np.allclose(out, a @ b)
print("ok")
"""


def test_the_teams_code_is_kept_in_the_cache_and_a_corrupt_copy_is_rebuilt(tmp_path):
    """A process writes the team's object code into the kernel cache; one that finds it
    truncated compiles it again, runs correctly and writes it anew."""
    import subprocess
    import sys

    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path))

    def child():
        r = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr

    child()
    (helper,) = tmp_path.rglob("helper_*.o")
    good = helper.read_bytes()
    helper.write_bytes(good[: len(good) // 2])  # truncated: its checksum fails
    child()
    assert helper.read_bytes() == good
