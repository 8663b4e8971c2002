"""Consecutive native steps run as one native call (numba/chain.py): the same numbers as the steps
run one by one and as the reference, feeds and handed-out arrays kept out of the chains, the
products' BLAS thread counts kept, and a failed part's error raised."""

import ctypes

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba import accumulate, blas, chain, native  # noqa: E402
from graphc.backends.numba.chain import NativeChain, NativeStep  # noqa: E402
from graphc.backends.numba.native import KernelFailed, NativeTask  # noqa: E402


def _mlp(backend, seed=0, sizes=(20, 64, 48, 5), lr=0.1):
    rng = np.random.default_rng(seed)
    with gc.Graph("mlp") as g:
        h = g.input("x", ("batch", sizes[0]))
        y = g.input("y", ("batch",), dtype="int64")
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            h = h @ g.param(f"w{i}", (a, b), init=(rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32))
            h = h + g.param(f"b{i}", (b,), init=rng.standard_normal(b).astype(np.float32) * 0.1)
            if i < len(sizes) - 2:
                h = gc.relu(h)
        loss = g.output("loss", gc.cross_entropy(h, y))
    with g:
        for name, grad in gc.gradients(loss).items():
            g.update(name, g.params[name] - lr * grad)
    return g, gc.compile(g, backend, outputs=[loss], apply_updates=True)


def _batch(rng, n=16, features=20, classes=5):
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def _runtime(exe):
    (rt,) = exe.runtimes.values()
    return rt


def test_a_training_step_runs_chains_and_matches_the_reference_over_new_batches():
    g, exe = _mlp("numba")
    gr, ref = _mlp("reference")
    rng = np.random.default_rng(1)
    for _ in range(4):  # a new batch every step: the fed arrays' steps stay Python steps
        x, y = _batch(rng)
        np.testing.assert_allclose(exe(x=x, y=y)[0], ref(x=x, y=y)[0], rtol=1e-5)
    for k in g.values:
        np.testing.assert_allclose(g.values[k], gr.values[k], rtol=1e-4, atol=1e-6, err_msg=k)
    chains = [st for st in _runtime(exe).program if isinstance(st, NativeChain)]
    kinds = {type(s).__name__ for c in chains for s in c.steps}
    assert chains and {"LoopKernel", "AccumulateCall"} <= kinds, kinds
    # the steps a chain stands for are the runtime's steps, in order, each once
    flat = [s for st in _runtime(exe).program for s in (st.steps if isinstance(st, NativeChain) else [st])]
    assert flat == _runtime(exe).steps


def test_chains_compute_the_same_bits_as_their_steps_one_by_one():
    rng = np.random.default_rng(2)
    batches = [_batch(rng) for _ in range(3)]
    results = []
    for one_by_one in (False, True):
        g, exe = _mlp("numba")
        exe(x=batches[0][0], y=batches[0][1])  # binds the specialisation
        rt = _runtime(exe)
        if one_by_one:
            rt.program = list(rt.steps)
        losses = [exe(x=x, y=y)[0] for x, y in batches]
        results.append((losses, {k: v.copy() for k, v in g.values.items()}))
    (la, wa), (lb, wb) = results
    np.testing.assert_array_equal(la, lb)
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def test_fed_and_handed_out_arrays_are_not_bound_into_a_chain():
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((6, 8)).astype(np.float32)
    w2 = rng.standard_normal((8, 4)).astype(np.float32)
    with gc.Graph("two") as g:
        x = g.input("x", (5, 6))
        a, b = g.param("w1", (6, 8), init=w1), g.param("w2", (8, 4), init=w2)
        h = gc.tanh(x @ a)
        out = g.output("y", gc.relu(h @ b) * 2.0)
    exe = gc.compile(g, "numba", outputs=[out])
    rt = None
    for _ in range(3):
        xv = rng.standard_normal((5, 6)).astype(np.float32)
        got = exe(x=xv)[0]
        rt = rt or _runtime(exe)
        np.testing.assert_allclose(got, np.maximum(np.tanh(xv @ w1) @ w2, 0) * 2.0, rtol=1e-5, atol=1e-6)
    chained = [s for st in rt.program if isinstance(st, NativeChain) for s in st.steps]
    loose = [st for st in rt.program if not isinstance(st, NativeChain)]
    fed = {n.id for n in rt.schedule.nodes.values() if n.is_input}
    nodes = [(st, getattr(st, "node", None)) for st in rt.steps]
    reads_feed = [st for st, n in nodes if n is not None and fed & {x.id for x in n.inputs}]
    hands_out = [st for st in rt.steps if getattr(st, "dyn", None)]  # the output pool's kernel
    assert reads_feed and hands_out
    assert all(st in loose for st in reads_feed + hands_out)
    assert any(getattr(st, "node", None) is not None and st.node.op == "matmul" for st in chained)


def _gemm_step(out, a, b, flops):
    task = accumulate.task(out, a, b, 1.0, 0.0)
    assert task is not None
    return NativeStep(task, flops)


class _Step:
    def __init__(self, got):
        self.got = got

    def native(self, fixed):
        return self.got


# its symbols share the process's engine with every kernel: graphc_ names, not `log` (libm's)
_RECORDER = """
@graphc_test_calls = global [16 x i32] zeroinitializer
@graphc_test_count = global i64 0
define void @graphc_test_set_threads(i32 %n) {
  %c = load i64, ptr @graphc_test_count
  %p = getelementptr [16 x i32], ptr @graphc_test_calls, i64 0, i64 %c
  store i32 %n, ptr %p
  %c1 = add i64 %c, 1
  store i64 %c1, ptr @graphc_test_count
  ret void
}
define ptr @graphc_test_log() {
  ret ptr @graphc_test_calls
}
"""


def test_small_and_large_products_share_a_chain_that_switches_blas_threads_between_them(monkeypatch):
    got = native.add_ir(_RECORDER, ["graphc_test_set_threads", "graphc_test_log"], {})
    log = ctypes.cast(ctypes.CFUNCTYPE(ctypes.c_void_p)(got["graphc_test_log"])(), ctypes.POINTER(ctypes.c_int32))
    setters = (got["graphc_test_set_threads"],)  # a recording setter in place of OpenBLAS's
    monkeypatch.setattr(blas, "native_setters", lambda: setters)
    monkeypatch.setattr(blas, "large", 3)
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((8, 8)).astype(np.float32), rng.standard_normal((8, 8)).astype(np.float32)
    outs = [np.zeros((8, 8), np.float32) for _ in range(5)]
    small, large = 1.0, 1e12
    steps = [_Step(_gemm_step(o, a, b, f)) for o, f in zip(outs, (small, small, large, large, small))]
    (st,) = chain.group(steps, {})
    assert st.small is True and st.final is True
    st.run({}, None, False)
    blas.restore()
    assert [log[i] for i in range(2)] == [3, 1]  # to the tuner's count before the large ones, then 1
    for o in outs:
        np.testing.assert_allclose(o, a @ b, rtol=1e-5)
    # where the count can be set from Python only, products of each kind get chains of their own
    monkeypatch.setattr(blas, "native_setters", lambda: None)
    split = chain.group(steps, {})
    assert [len(c.steps) for c in split[:2]] == [2, 2] and split[2] is steps[4]  # the last small one alone
    # a runtime that runs its products on graphc's own threads keeps them out of chains
    assert chain.group(steps, {}, products=False) == steps


def _status_one():
    ir = "define i32 @graphc_test_fails(ptr %b, ptr %a, ptr %r) {\n  ret i32 7\n}\n"
    return native.add_ir(ir, ["graphc_test_fails"], {})["graphc_test_fails"]


def test_a_failed_part_stops_the_chain_and_raises_its_error():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    before, after = np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)
    seen = []

    def finish(status):
        seen.append(status)
        raise KernelFailed(f"the test part failed (status {status})")

    ret = ctypes.c_int64(0)
    fails = NativeTask(_status_one(), 0, None, ctypes.addressof(ret), ret, finish)
    steps = [_Step(_gemm_step(before, a, b, 1.0)), _Step(NativeStep(fails)), _Step(_gemm_step(after, a, b, 1.0))]
    (st,) = chain.group(steps, {})
    with pytest.raises(KernelFailed, match="status 7"):
        st.run({}, None, False)
    assert seen == [7]
    np.testing.assert_allclose(before, a @ b, rtol=1e-5)  # the part before ran
    assert not after.any()  # the part after did not
