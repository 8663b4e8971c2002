"""What makes the numba backend's LSTM/GRU training step fast, checked on its plan and its values:

- the forward scan stacks the gates' activations and the reverse scan reads them
  (passes/restack.py): no body recomputes the forward product or an activation;
- a gate column of the split is copied out of the gate matrix's own buffer at its offset
  (BodySchedule.block_of), not through the strided view;
- a loop whose steps' products reach LOOP_SMALL_FLOPS tunes its own BLAS thread count.

Values and gradients match the reference interpreter in float64.
"""

import re

import numpy as np
import pytest
from lstm_cell import lstm_cell

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba import blas  # noqa: E402
from graphc.backends.numba.scan_loop import NativeScan  # noqa: E402

T, B, D, H = 4, 3, 2, 5


def lstm_loss(dtype="float64", hidden=H, inputs=D, batch=B):
    g = gc.Graph("lstm")
    with g:
        xs = g.input("xs", (T, batch, inputs), dtype)
        w = g.input("w", (inputs, 4 * hidden), dtype)
        u = g.input("u", (hidden, 4 * hidden), dtype)

        zeros = gc.constant(np.full((batch, hidden), 0.1), dtype)
        (h, _), _ = gc.scan(lstm_cell(w, u, stack_h=False), (zeros, zeros), xs)
        loss = gc.sum(h * h)
    return g, loss, [xs, w, u]


def feeds(seed, dtype=np.float64, hidden=H, inputs=D, batch=B):
    rng = np.random.default_rng(seed)
    shapes = {"xs": (T, batch, inputs), "w": (inputs, 4 * hidden), "u": (hidden, 4 * hidden)}
    return {k: (rng.standard_normal(s) * 0.5).astype(dtype) for k, s in shapes.items()}


def native(exe):
    return [st.fn for st in exe.runtime().steps if isinstance(getattr(st, "fn", None), NativeScan)]


def test_the_lstm_training_step_reads_the_forward_activations_and_copies_gate_blocks_from_their_buffer():
    g, loss, ins = lstm_loss()
    grads = gc.grad(loss, ins[1:])  # the weights' gradients, as in training
    exe = gc.compile(g, "numba", outputs=[loss, *grads])
    fwd, back = native(exe)
    assert fwd.fallback is None and back.fallback is None
    # the forward scan stacks the gates' activations; the reverse body reads them, recomputes
    # none of them and multiplies once (dz @ u^T)
    assert sorted(n.op for n in fwd.loop.body.outputs[2:]) == ["sigmoid"] * 3 + ["tanh"] * 2
    assert sum(n.op == "matmul" for n in back.loop.body.nodes) == 1
    assert not any(n.op in ("sigmoid", "tanh", "split") for n in back.loop.body.nodes)
    # each gate column is a block of a contiguous buffer of the plan: copied from it at its offset
    for fn in (fwd,):
        plan = fn.loop.plan
        copies = [st for st in plan.steps if st.name.startswith("copy of")]
        assert len(copies) == 4 and all(st.call.label == "contiguous copy of a block" for st in copies)
        (split,) = [n for n in plan.nodes.values() if n.op == "split"]
        assert {st.ins[0] for st in copies} == {plan.base(split.inputs[0].id)}
        # each column loop runs from its block's start (an index `start + i1` would not vectorise)
        starts = sorted(int(re.search(r"for i1 in range\((\d+), ", st.call.call)[1])
                        if "range({p}[1].shape[1])" not in st.call.call else 0 for st in copies)  # fmt: skip
        assert starts == [0, H, 2 * H, 3 * H]
    ref = gc.compile(g, "reference", outputs=[loss, *grads])
    for seed in (1, 2):
        for x, y in zip(exe(feeds(seed)), ref(feeds(seed))):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_a_captured_strided_value_is_copied_through_its_view():
    g = gc.Graph("captured")
    with g:
        xs = g.input("xs", (T, B, 2 * H), "float64")
        m = g.input("m", (B, 4 * H), "float64")

        def cell(h, x):  # a block of a captured array, whose layout is the caller's (here F-order)
            return gc.tanh(h + x * m[:, H : 3 * H]), None

        h, _ = gc.scan(cell, gc.constant(np.zeros((B, 2 * H)), "float64"), xs)
        loss = gc.sum(h * h)
    exe = gc.compile(g, "numba", outputs=[loss], disable=("loop_hoist",))  # the slice stays in the body
    ref = gc.compile(g, "reference", outputs=[loss])
    rng = np.random.default_rng(0)
    f = {"xs": rng.standard_normal((T, B, 2 * H)), "m": np.asfortranarray(rng.standard_normal((B, 4 * H)))}
    exe(f)
    labels = [st.call.label for st in native(exe)[0].loop.plan.steps if st.name.startswith("copy of")]
    assert labels == ["contiguous copy"]
    np.testing.assert_allclose(exe(f)[0], ref(f)[0], rtol=1e-12)


@pytest.mark.parametrize("hidden,threaded", [(H, False), (128, True)])
def test_a_loop_with_large_products_tunes_its_own_thread_count(monkeypatch, hidden, threaded):
    monkeypatch.delenv("GRAPHC_BLAS_THREADS", raising=False)
    g, loss, _ = lstm_loss("float32", hidden=hidden, inputs=2, batch=32)
    exe = gc.compile(g, "numba", outputs=[loss])
    ref = gc.compile(g, "reference", outputs=[loss])
    f = feeds(0, np.float32, hidden=hidden, inputs=2, batch=32)
    used = []
    real = blas.use
    monkeypatch.setattr(blas, "use", lambda n: (used.append(n), real(n)))
    for _ in range(12):  # two warm-up calls, then a block of probes on each count
        np.testing.assert_allclose(exe(f)[0], ref(f)[0], rtol=1e-4)
    (fn,) = native(exe)
    per_step = 2.0 * 32 * hidden * 4 * hidden  # h @ u, the step's one product
    assert fn.flops == T * per_step and fn.threaded is threaded
    assert (per_step >= blas.LOOP_SMALL_FLOPS) is threaded
    counts = [1, blas.cores()] if threaded and blas.cores() > 1 else [1]
    assert fn.tuner.choices == counts and set(used) >= set(counts)
    if len(counts) > 1:
        assert all(fn.tuner.times[c] for c in counts)  # the loop's own calls were timed on each count


def test_the_reverse_loop_multiplies_by_a_c_ordered_copy_of_the_transposed_weight_made_at_every_call():
    g, loss, ins = lstm_loss()
    grads = gc.grad(loss, ins[1:])
    exe = gc.compile(g, "numba", outputs=[loss, *grads])
    ref = gc.compile(g, "reference", outputs=[loss, *grads])
    f = feeds(3)
    u = f["u"]  # the same array at every call, changed in place between them (as an optimizer does)
    for scale in (1.0, -0.5, 2.0):
        u *= scale
        for x, y in zip(exe(f), ref(f)):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
    fwd, back = native(exe)
    assert fwd._ordered == []  # the forward reads u as it is, C-ordered
    ((k, buf),) = back._ordered  # the reverse body reads u^T, a transposed view: read from a copy
    assert buf.flags.c_contiguous and np.array_equal(buf, u.T)
    assert back.loop.body.captured[k].shape == (4 * H, H)


@pytest.mark.parametrize("starts", [(0, 0), (2, 0), (0, 3), (1, 2)])
def test_a_block_copy_loops_from_the_blocks_start_and_copies_the_block_both_ways(starts):
    from graphc.backends.numba.loop_copies import block_copy

    rng = np.random.default_rng(0)
    whole, block = rng.standard_normal((5, 7)), np.zeros((3, 4))
    region = (slice(starts[0], starts[0] + 3), slice(starts[1], starts[1] + 4))
    out = block_copy("src", "dst", starts, into=False)  # dst: the block of src at starts
    exec(out, {}, {"src": whole, "dst": block})
    np.testing.assert_array_equal(block, whole[region])
    back = np.zeros_like(whole)
    exec(block_copy("src", "dst", starts, into=True), {}, {"src": block, "dst": back})
    np.testing.assert_array_equal(back[region], block)
    assert np.count_nonzero(back) == block.size
    assert all(f"range({s}, {s} + " in out for s in starts if s) and "+ i" not in out
