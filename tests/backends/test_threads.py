"""Compiled steps called from several threads give what sequential calls give.

Each call holds the lock of the graph's variables (graphc.backends.threads), so calls of
one step, and of different steps sharing the variables, run whole and one at a time. The
tests use real threads started together at a barrier; every setup is order-independent
(each thread checks its own results, SGD on one fixed batch), so the expected values are
exact.
"""

import threading

import numpy as np
import pytest

import graphc as gc
import graphc.backends.base as base
from graphc.backends.threads import variables_lock

pytest.importorskip("numba")

BACKENDS = ["reference", "numba"]


def _in_threads(work, n_threads):
    """Run work(i) in n_threads threads released together; re-raise the first failure."""
    barrier = threading.Barrier(n_threads)
    errors = []

    def run(i):
        try:
            barrier.wait()
            work(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _forward():
    with gc.Graph("fwd", seed=0) as g:
        x = g.input("x", ("b", 128))
        w = g.param("w", (128, 128))
        h = gc.tanh(x @ w) * 0.5 + gc.sigmoid(x)
        g.output("h", h)
        g.output("s", gc.sum(gc.exp(-h * h), 1))
    return g


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_threads_of_forward_calls_equal_sequential_calls(backend):
    step = gc.compile(_forward(), backend)
    rng = np.random.default_rng(0)
    n_threads, calls = 4, 20
    feeds = [[rng.standard_normal((64, 128)).astype(np.float32) for _ in range(calls)] for _ in range(n_threads)]
    want = [[{k: v.copy() for k, v in step(x=x).items()} for x in xs] for xs in feeds]
    got = [[None] * calls for _ in range(n_threads)]

    def work(i):
        for j, x in enumerate(feeds[i]):
            got[i][j] = step(x=x)  # kept: the output pool must not hand these arrays out again

    _in_threads(work, n_threads)
    for i in range(n_threads):
        for j in range(calls):
            for k in ("h", "s"):
                np.testing.assert_array_equal(got[i][j][k], want[i][j][k], err_msg=f"thread {i} call {j} {k}")


def _sgd(lr=0.05):
    with gc.Graph("sgd", seed=3) as g:
        x = g.input("x", ("b", 32))
        t = g.input("t", ("b", 4))
        w1 = g.param("w1", (32, 64))
        w2 = g.param("w2", (64, 4))
        loss = gc.mean(gc.square(gc.tanh(x @ w1) @ w2 - t))
        g.output("loss", loss)
        for p, gr in zip((w1, w2), gc.grad(loss, [w1, w2])):
            g.update(p.name, p - lr * gr)
    return g


def _batch():
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((32, 32)).astype(np.float32), "t": rng.standard_normal((32, 4)).astype(np.float32)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_of_sgd_steps_equal_as_many_sequential_steps(backend):
    """Every step is the same map of the weights (one fixed batch), so 2 x 60 threaded steps
    must land where 120 sequential ones do; a lost or torn update would not."""
    batch, steps = _batch(), 60
    seq = _sgd()
    seq_step = gc.compile(seq, backend)
    for _ in range(2 * steps):
        seq_step(batch)
    par = _sgd()
    par_step = gc.compile(par, backend)
    _in_threads(lambda i: [par_step(batch) for _ in range(steps)], 2)
    assert par_step.step == 2 * steps
    for k in ("w1", "w2"):
        assert not np.allclose(par.values[k], _sgd().values[k])  # it did train
        np.testing.assert_allclose(par.values[k], seq.values[k], rtol=1e-6, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_evaluation_step_beside_training_sees_whole_steps_only(backend):
    """A second step compiled from the same graph (the loss, no updates) shares the variables'
    lock: each evaluation sees the weights between two training steps, never half-written."""
    batch, steps = _batch(), 40
    ref = _sgd()
    ref_train, ref_eval = gc.compile(ref, backend), gc.compile(ref, backend, outputs=["loss"], apply_updates=False)
    states = []
    for _ in range(steps + 1):
        states.append(float(ref_eval(batch)[0]))
        ref_train(batch)
    g = _sgd()
    train, evaluate = gc.compile(g, backend), gc.compile(g, backend, outputs=["loss"], apply_updates=False)
    assert variables_lock(train.graph) is variables_lock(evaluate.graph) is variables_lock(g)
    seen = []

    def work(i):
        if i == 0:
            for _ in range(steps):
                train(batch)
        else:
            seen.extend(float(evaluate(batch)[0]) for _ in range(3 * steps))

    _in_threads(work, 2)
    for v in seen:
        assert np.isclose(states, v, rtol=1e-6, atol=0).any(), (v, states)
    np.testing.assert_allclose(float(evaluate(batch)[0]), states[-1], rtol=1e-6)


def test_graphs_with_their_own_variables_have_their_own_locks():
    a, b = _sgd(), _sgd()
    assert variables_lock(a) is not variables_lock(b)
    assert variables_lock(gc.compile(a, "numba").graph) is variables_lock(a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_holds_the_variables_lock_from_the_feed_check_on(backend, monkeypatch):
    g = _sgd()
    step = gc.compile(g, backend)
    original, held = base.check_feeds, []

    def checking(graph, feeds, needed):
        held.append(variables_lock(g).locked())
        return original(graph, feeds, needed)

    monkeypatch.setattr(base, "check_feeds", checking)
    step(_batch())
    assert held == [True] and not variables_lock(g).locked()
