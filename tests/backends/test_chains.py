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


def _two_layers():
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((6, 8)).astype(np.float32)
    w2 = rng.standard_normal((8, 4)).astype(np.float32)
    with gc.Graph("two") as g:
        x = g.input("x", (5, 6))
        a, b = g.param("w1", (6, 8), init=w1), g.param("w2", (8, 4), init=w2)
        h = gc.tanh(x @ a)
        out = g.output("y", gc.relu(h @ b) * 2.0)
    return gc.compile(g, "numba", outputs=[out]), lambda xv: np.maximum(np.tanh(xv @ w1) @ w2, 0) * 2.0


def test_steps_of_fed_and_handed_out_arrays_are_chained_with_the_arrays_of_each_call():
    exe, want = _two_layers()
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((5, 6)).astype(np.float32) for _ in range(3)]
    held = [exe(x=xv)[0] for xv in xs]  # the caller keeps each output: the pool hands out new arrays
    for xv, got in zip(xs, held):
        np.testing.assert_allclose(got, want(xv), rtol=1e-5, atol=1e-6)
    rt = _runtime(exe)
    (c,) = [st for st in rt.program if isinstance(st, NativeChain)]
    (last,) = [st for st in rt.program if not isinstance(st, NativeChain)]
    assert last is rt.steps[-1] and last.dyn  # the output's kernel: its pool array is not held
    assert c.steps == rt.steps[:-1] and [row for row, _ in c.dynamic] == [0]  # the feed's product
    # the same fed array again (and the output let go): the tasks made for them are reused;
    # another array: made again
    del held
    exe(x=xs[-1])
    tasks = list(c.tasks)
    exe(x=xs[-1])
    assert c.tasks == tasks
    xs[-1] *= 2  # the same array, new values: read at the call
    np.testing.assert_allclose(exe(x=xs[-1])[0], want(xs[-1]), rtol=1e-5, atol=1e-6)
    other = xs[0].copy()
    np.testing.assert_allclose(exe(x=other)[0], want(other), rtol=1e-5, atol=1e-6)
    assert any(a is not b for a, b in zip(c.tasks, tasks))


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
    # the libraries found again (blas.rescan): an equal tuple of the same setters, not the same
    # object; the chain still runs natively (once it compared by identity, and every chain with
    # a switch ran its steps from Python in every real runtime)
    monkeypatch.setattr(blas, "native_setters", lambda: tuple(list(setters)))
    st.run({}, None, False)
    blas.restore()
    assert [log[i] for i in range(4)] == [3, 1, 3, 1]
    # where the count can be set from Python only, products of each kind get chains of their own
    monkeypatch.setattr(blas, "native_setters", lambda: None)
    split = chain.group(steps, {})
    assert [len(c.steps) for c in split[:2]] == [2, 2] and split[2] is steps[4]  # the last small one alone
    # a runtime that runs its products on graphc's own threads keeps them out of chains
    assert chain.group(steps, {}, products=False) == steps


class _PythonStep(_Step):
    def __init__(self, got, out, value):
        super().__init__(got)
        self.out, self.value, self.runs = out, value, 0

    def run(self, vals, ctx, first):
        self.out[...] = self.value
        self.runs += 1


def test_a_chain_whose_task_cannot_be_made_for_a_calls_arrays_runs_its_steps_from_python():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    out, seen = np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)
    # a step whose task is made from the call's value "v": none can be made for a read-only one
    dynamic = chain.native_step(lambda v: accumulate.task(v, a, b, 1.0, 0.0), ["v"], {})
    steps = [_PythonStep(dynamic, seen, 1.0), _PythonStep(_gemm_step(out, a, b, 1.0), seen, 2.0)]
    (st,) = chain.group(steps, {}, fed={"v"})
    v = np.zeros((4, 4), np.float32)
    st.run({"v": v}, None, False)
    np.testing.assert_allclose(v, a @ b, rtol=1e-5)
    np.testing.assert_allclose(out, a @ b, rtol=1e-5)
    assert [s.runs for s in steps] == [0, 0]
    frozen = np.zeros((4, 4), np.float32)
    frozen.flags.writeable = False
    st.run({"v": frozen}, None, False)  # no native call for it: both steps run from Python, from now on
    assert [s.runs for s in steps] == [1, 1] and st.python
    np.testing.assert_array_equal(seen, 2.0)
    # a value no step before the chain makes is not waited for: that step stays out of chains
    assert chain.group(steps, {})[0] is steps[0]


def _status_one():
    ir = "define i32 @graphc_test_fails(ptr %b, ptr %a, ptr %r) {\n  ret i32 7\n}\n"
    return native.add_ir(ir, ["graphc_test_fails"], {})["graphc_test_fails"]


def _failing_task(seen: list) -> NativeTask:
    """A task returning status 7, whose finish records it and raises KernelFailed."""

    def finish(status):
        seen.append(status)
        raise KernelFailed(f"the test part failed (status {status})")

    ret = ctypes.c_int64(0)
    return NativeTask(_status_one(), 0, None, ctypes.addressof(ret), ret, finish)


def test_a_failed_part_stops_the_chain_and_raises_its_error():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    before, after = np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)
    seen = []
    fails = _failing_task(seen)
    steps = [_Step(_gemm_step(before, a, b, 1.0)), _Step(NativeStep(fails)), _Step(_gemm_step(after, a, b, 1.0))]
    (st,) = chain.group(steps, {})
    with pytest.raises(KernelFailed, match="status 7"):
        st.run({}, None, False)
    assert seen == [7]
    np.testing.assert_allclose(before, a @ b, rtol=1e-5)  # the part before ran
    assert not after.any()  # the part after did not


def test_a_series_runs_its_tasks_in_order_and_raises_the_failed_one():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    first, second, after = (np.zeros((4, 4), np.float32) for _ in range(3))
    seen = []
    fails = _failing_task(seen)
    gemm = [accumulate.task(out, a, b, 1.0, 0.0) for out in (first, second, after)]
    whole = chain.series(gemm[:2])
    whole()
    np.testing.assert_allclose(first, a @ b, rtol=1e-5)
    np.testing.assert_allclose(second, a @ b, rtol=1e-5)
    first[:] = 0
    broken = chain.series([gemm[0], fails, gemm[2]])
    with pytest.raises(KernelFailed, match="status 7"):
        broken()
    assert seen == [7]
    np.testing.assert_allclose(first, a @ b, rtol=1e-5)  # the task before ran
    assert not after.any()  # the task after did not
    assert chain.series([gemm[0], None]) is None


def test_a_label_out_of_range_stops_the_chain_with_the_references_error_and_updates_nothing():
    g, exe = _mlp("numba")
    gr, ref = _mlp("reference")
    rng = np.random.default_rng(2)
    x, y = _batch(rng)
    exe(x=x, y=y), ref(x=x, y=y)
    rt = _runtime(exe)
    labelled = [s for c in rt.program if isinstance(c, NativeChain) for s in c.steps if hasattr(s, "node")]
    names = {s.node.opdef.name for s in labelled}
    if chain._runner() is not None:  # the label kernels run inside chains, checked natively
        assert {"cross_entropy_labels", "cross_entropy_labels_grad"} <= names, names
    before = {k: np.array(v) for k, v in g.values.items()}
    bad = y.copy()
    bad[3] = 5  # 5 classes: 0..4
    with pytest.raises(gc.GraphcError, match="5") as err:
        exe(x=x, y=bad)
    with pytest.raises(type(err.value)):
        ref(x=x, y=bad)
    for k, v in before.items():  # the step stopped before any update
        np.testing.assert_array_equal(g.values[k], v, err_msg=k)
    x2, y2 = _batch(rng)  # and the next good step runs natively again, as the reference
    np.testing.assert_allclose(exe(x=x2, y=y2)[0], ref(x=x2, y=y2)[0], rtol=1e-5)
    for k in g.values:
        np.testing.assert_allclose(g.values[k], gr.values[k], rtol=1e-4, atol=1e-6, err_msg=k)
