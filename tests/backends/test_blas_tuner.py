"""The BLAS thread tuner: block probes, the first call after a switch untimed, hysteresis later."""

import time

import pytest

from graphc.backends.numba import blas


def _drive(tuner, cost, calls):
    """Run `calls` calls whose duration (seconds) is cost(threads, first_after_switch)."""
    used = []
    last = None
    for _ in range(calls):
        n = tuner.pick()
        dt = cost(n, n != last)
        last = n
        tuner.done(time.perf_counter() - dt)
        used.append(n)
    return used


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(blas, "cores", lambda: 2)
    monkeypatch.delenv("GRAPHC_BLAS_THREADS", raising=False)


def test_more_threads_win_despite_a_slow_first_call_after_each_switch(two_cores):
    # 2 threads are faster, but each switch costs a slow wake-up call: probing call by call
    # would pick 1 thread; blocks with the first call untimed pick 2.
    cost = lambda n, first: (0.050 if first else 0.004) if n == 2 else 0.006
    t = blas.Tuner(has_large=True)
    early = 10 + blas.Tuner.FIRST_RECHECK  # decided at call 10, looked at again soon after
    used = _drive(t, cost, early + 20)
    assert t.best == 2
    assert used[2:6] == [1, 1, 1, 1] and used[6:10] == [2, 2, 2, 2]
    assert used[10 : early - 1] == [2] * (early - 11)
    assert used[early - 1 : early + 3] == [1] * 4  # the early second look at the loser
    assert used[early + 3 :] == [2] * 17


def test_a_first_round_disturbed_by_a_busy_core_is_corrected_by_the_early_second_look(two_cores):
    # 2 threads are faster, but the other core was busy while they were first probed
    calls = [0]

    def cost(n, first):
        calls[0] += 1
        return 0.009 if n == 2 and calls[0] <= 10 else (0.004 if n == 2 else 0.006)

    t = blas.Tuner(has_large=True)
    early = 10 + blas.Tuner.FIRST_RECHECK
    used = _drive(t, cost, early + 12)
    assert used[10 : early - 1] == [1] * (early - 11)  # the first round picked 1
    assert t.best == 2 and used[-6:] == [2] * 6  # the early look (4 calls) switched to 2
    assert t.recheck == blas.Tuner.RECHECK


def test_one_thread_kept_when_threads_do_not_pay_and_rechecked_later(two_cores):
    cost = lambda n, first: 0.0068 if n == 2 else 0.006  # 2 threads lose, but narrowly
    t = blas.Tuner(has_large=True)
    block, decided_at = blas.Tuner.BLOCK, 2 + 2 * blas.Tuner.BLOCK  # 2 warm-up calls, then a block each
    early = decided_at + blas.Tuner.FIRST_RECHECK  # the early second look at the loser
    used = _drive(t, cost, early + 2 * block + blas.Tuner.RECHECK - 2)
    assert t.best == 1
    assert used[early - 1 : early - 1 + block] == [2] * block
    assert used[-block:] == [2] * block  # the loser got another block RECHECK calls later
    assert t.recheck == 2 * blas.Tuner.RECHECK  # and lost again: the interval doubles


def test_a_clear_loser_in_the_early_look_waits_twice_as_long(two_cores):
    # one thread is 1.5x slower in every round: its probes (4 slow calls each) come half as often
    cost = lambda n, first: 0.004 if n == 2 else 0.006
    t = blas.Tuner(has_large=True)
    block, early = blas.Tuner.BLOCK, 10 + blas.Tuner.FIRST_RECHECK
    used = _drive(t, cost, early + 3)
    assert used[early - 1 : early + 3] == [1] * block  # the early look
    assert t.recheck == 2 * blas.Tuner.RECHECK
    wait = 2 * blas.Tuner.RECHECK - 1  # calls from the look's decision to the next look
    used = _drive(t, cost, wait + block)
    assert used[:-block] == [2] * wait and used[-block:] == [1] * block


def test_a_probe_block_far_slower_than_the_other_count_ends_at_its_first_timed_call(two_cores):
    # 2 threads take 5x as long (a busy core): each of their blocks stops after one timed call
    cost = lambda n, first: 0.030 if n == 2 else 0.006
    t = blas.Tuner(has_large=True)
    used = _drive(t, cost, 40)
    assert used[2:6] == [1] * 4 and used[6:9] == [2, 2, 1]  # untimed wake-up, one timed call, back
    early = 8 + blas.Tuner.FIRST_RECHECK
    assert used[early - 1 : early + 2] == [2, 2, 1] and used.count(2) == 4
    assert t.best == 1 and t.recheck == 2 * blas.Tuner.RECHECK


def test_fixed_count_and_small_graphs_never_probe(monkeypatch):
    monkeypatch.setattr(blas, "cores", lambda: 2)
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "2")
    assert set(_drive(blas.Tuner(has_large=True), lambda n, f: 0.001, 12)) == {2}
    monkeypatch.delenv("GRAPHC_BLAS_THREADS")
    assert set(_drive(blas.Tuner(has_large=False), lambda n, f: 0.001, 12)) == {1}


def test_a_blas_library_loaded_later_follows_the_thread_count_too():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    known = {c.path for c in blas._controllers()}
    import scipy.linalg  # noqa: F401  (SciPy's own OpenBLAS, where it ships one)

    found = {c.filepath for c in threadpoolctl.ThreadpoolController().lib_controllers if c.user_api == "blas"}
    if not found - known:
        pytest.skip("no BLAS library other than those already loaded")
    try:
        blas.use(1)
        blas.rescan()
        assert {c.path for c in blas._controllers()} == found
        assert all(c.get_num_threads() == 1 for c in blas._controllers())
    finally:
        blas.restore()
