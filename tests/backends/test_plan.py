"""The memory plan's rules, deterministically: buffer reuse from liveness, writes in place over a
dying input only, and in-place parameter updates only when no later step reads the old value.

First `plan_memory` on hand-made schedules (and on seeded random ones, checked against the
liveness invariant), then the Numba executor's plan for graphs built to tempt each rule, run
against the reference interpreter.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.backends.plan import ALIGN, Step, plan_memory

pytest.importorskip("numba")

N = 256  # bytes per value unless a test says otherwise


def _sizes(*ids, n=N):
    return {v: n for v in ids}


# -- plan_memory ------------------------------------------------------------------------------
def test_a_read_that_dies_in_an_elementwise_step_gives_its_buffer_to_the_write():
    steps = [Step([], [0]), Step([0], [1], {1: [0]}), Step([1], [2])]
    plan = plan_memory(steps, _sizes(0, 1, 2), keep=[2])
    assert plan.buffer_of[1] == plan.buffer_of[0]
    assert plan.buffer_of[2] != plan.buffer_of[1]


def test_a_read_that_a_later_step_needs_is_never_written_in_place():
    # step 1 may write 1 over 0 (same index), but step 2 reads 0 again
    steps = [Step([], [0]), Step([0], [1], {1: [0]}), Step([0, 1], [2])]
    plan = plan_memory(steps, _sizes(0, 1, 2), keep=[2])
    assert plan.last_use[0] == 2
    assert len({plan.buffer_of[v] for v in (0, 1, 2)}) == 3


def test_without_inplace_a_write_never_shares_a_buffer_with_a_read_of_its_step():
    steps = [Step([], [0]), Step([0], [1]), Step([1], [2])]
    plan = plan_memory(steps, _sizes(0, 1, 2), keep=[2])
    assert plan.buffer_of[1] != plan.buffer_of[0] and plan.buffer_of[2] != plan.buffer_of[1]
    assert plan.buffer_of[2] == plan.buffer_of[0]  # 0 died at step 1: its buffer is reused
    assert len(plan.sizes) == 2 and plan.total_bytes == 2 * N


def test_kept_values_and_the_bases_of_read_views_stay_alive():
    # 5 is a view of 0 read at step 3: 0 lives until then; 1 is kept (an output)
    steps = [Step([], [0]), Step([0], [1]), Step([1], [2]), Step([5, 2], [3]), Step([3], [4])]
    plan = plan_memory(steps, _sizes(0, 1, 2, 3, 4), alias={5: 0}, keep=[1, 4])
    assert plan.last_use[0] == 3 and plan.last_use[1] == len(steps)
    assert plan.buffer_of[0] not in [plan.buffer_of[v] for v in (1, 2, 3)]  # 4 comes after 0's death
    assert plan.buffer_of[1] not in [plan.buffer_of[v] for v in (0, 2, 3, 4)]


def test_no_write_in_place_over_a_view_or_a_value_another_write_of_the_step_reads():
    steps = [Step([], [0]), Step([5], [1], {1: [5]}), Step([1], [2])]
    plan = plan_memory(steps, _sizes(0, 1, 2), alias={5: 0}, keep=[2])
    assert plan.buffer_of[1] != plan.buffer_of[0]  # through a view: not the same index
    steps = [Step([], [0]), Step([0], [1, 2], {1: [0], 2: [0]}), Step([1, 2], [3])]
    plan = plan_memory(steps, _sizes(0, 1, 2, 3), keep=[3])
    buf = plan.buffer_of
    assert buf[1] != buf[2] and [buf[1], buf[2]].count(buf[0]) == 1  # one write takes 0's place


def test_a_buffer_serves_the_largest_value_given_to_it():
    steps = [Step([], [0]), Step([0], [1]), Step([1], [2]), Step([2], [3])]
    nbytes = {0: 100, 1: 64, 2: 1000, 3: 8}
    plan = plan_memory(steps, nbytes, keep=[3])
    for v, n in nbytes.items():
        assert plan.sizes[plan.buffer_of[v]] >= n and plan.sizes[plan.buffer_of[v]] % ALIGN == 0
    assert all(len(a) == s for a, s in zip(plan.allocate(), plan.sizes))
    assert all(a.ctypes.data % ALIGN == 0 for a in plan.allocate())


def _random_schedule(rng, n_steps=12):
    """Steps reading earlier values (sometimes through a view) and writing 1-2 new ones,
    each write allowed in place over any of its step's reads."""
    steps, nbytes, alias, made = [], {}, {}, []
    nxt = 0
    for _ in range(n_steps):
        reads = list(rng.choice(made, size=min(len(made), rng.integers(0, 3)), replace=False)) if made else []
        if reads and rng.random() < 0.2:
            alias[1000 + nxt] = reads[0]  # read a view of it instead
            reads[0] = 1000 + nxt
        writes = list(range(nxt, nxt + int(rng.integers(1, 3))))
        nxt += len(writes)
        for w in writes:
            nbytes[w] = int(rng.choice([64, 128, 256]))
        steps.append(Step(reads, writes, {w: list(reads) for w in writes}))
        made += writes
    keep = list(rng.choice(made, size=2, replace=False))
    return steps, nbytes, alias, keep


def _base(v, alias):
    while v in alias:
        v = alias[v]
    return v


def test_seeded_random_schedules_never_share_a_buffer_between_two_live_values():
    """A value lives from the step writing it to its last read (a kept value to the end); two
    values share a buffer only if their lives are disjoint, or the second is written in place
    over the first at the very step where the first is last read."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        steps, nbytes, alias, keep = _random_schedule(rng)
        plan = plan_memory(steps, nbytes, alias, keep)

        born = {w: i for i, st in enumerate(steps) for w in st.writes}
        last = dict(born)
        for i, st in enumerate(steps):
            for r in st.reads:
                last[_base(r, alias)] = max(last[_base(r, alias)], i)
        for v in keep:
            last[v] = len(steps)
        inplace = {(w, r) for st in steps for w, rs in st.inplace.items() for r in rs}
        assert set(plan.buffer_of) == set(nbytes)
        for v in nbytes:
            assert plan.sizes[plan.buffer_of[v]] >= nbytes[v]
            for w in nbytes:
                if v == w or plan.buffer_of[v] != plan.buffer_of[w] or born[w] < born[v]:
                    continue
                disjoint = born[w] > last[v]
                in_place = born[w] == last[v] and (w, v) in inplace
                assert disjoint or in_place, f"seed {seed}: {w} written over {v}, which lives to step {last[v]}"


# -- the Numba executor's plan ------------------------------------------------------------------
def _spec(step):
    """The schedule of a step's one specialisation."""
    (rt,) = step.runtimes.values()
    return rt.schedule


def _compare(build, calls=2):
    """Numba (without passes, so node ids are the graph's) against the reference, twice over
    (the second call runs on updated variables and reused buffers); returns the numba step."""
    g, gr = build(), build()
    exe, ref = gc.compile(g, "numba", passes=False), gc.compile(gr, "reference")
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(g.inputs[n].shape).astype(np.float32) for n in g.inputs}
    for _ in range(calls):
        got, want = exe(feeds), ref(feeds)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
        for k in gr.values:
            np.testing.assert_allclose(g.values[k], gr.values[k], rtol=1e-5, atol=1e-6, err_msg=k)
    return exe, g


def _softmax_then(read_again: bool):
    def build():
        with gc.Graph("ip") as g:
            x = g.input("x", (4, 6))
            w = g.param("w", (6, 6), init="normal")
            a = gc.softmax(x @ w, 1)  # a kernel of its own, into a planned buffer
            b = a * 3.0 + 1.0  # elementwise over a, same shape: may take a's buffer if a dies here
            g.output("y", (b @ w) * (a @ w) if read_again else b @ w)
        return g

    return build


def _ids(g):
    a = next(n for n in g.nodes if n.op == "softmax")
    b = next(n for n in g.nodes if n.op == "add")
    return a.id, b.id


def test_a_value_read_by_an_elementwise_kernel_and_a_later_one_is_not_overwritten_in_place():
    exe, g = _compare(_softmax_then(read_again=True))
    a, b = _ids(g)
    plan = _spec(exe).plan
    b_step = next(i for i, k in enumerate(exe.kernels) if b in k.outputs)
    assert plan.last_use[a] > b_step  # the graph does what it is built for: a is read after b is written
    assert plan.buffer_of[b] != plan.buffer_of[a]


def test_a_value_that_dies_in_an_elementwise_kernel_is_overwritten_in_place():
    exe, g = _compare(_softmax_then(read_again=False))
    a, b = _ids(g)
    assert _spec(exe).plan.buffer_of[b] == _spec(exe).plan.buffer_of[a]


def _update(read_after: bool):
    def build():
        with gc.Graph("up") as g:
            x = g.input("x", (4, 4))
            p = g.param("p", (4, 4), init="normal")
            if read_after:
                new = gc.tanh(p) * 0.5 + x  # the update's kernel...
                g.output("y", new @ p)  # ...and a later one reading the old p
            else:
                new = p * 0.5 + x  # p read at the index written, in the same kernel
                g.output("y", gc.sum(x))
            g.update("p", new)
        return g

    return build


def test_an_update_whose_old_value_is_read_later_is_copied_in_at_the_end():
    exe, _ = _compare(_update(read_after=True))
    spec = _spec(exe)
    assert spec.inplace_updates == {} and [v for v, _ in spec.copy_updates] == ["p"]


def test_an_update_read_only_at_the_index_it_writes_is_done_in_place():
    exe, g = _compare(_update(read_after=False))
    spec = _spec(exe)
    assert list(spec.inplace_updates) == ["p"] and spec.copy_updates == []
    (rt,) = exe.runtimes.values()
    assert rt.static[spec.inplace_updates["p"]] is g.values["p"]  # the kernel writes the variable
