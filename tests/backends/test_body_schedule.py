"""A scan body compiles into the same kind of schedule as a graph (scan_body.BodySchedule, a
graphc.backends.schedule.Schedule): typed Lowering steps, Storage, Elements, the plan's input and
the plan; the native loop's steps and buffers are built on top of it, with unchanged results."""

import numpy as np
import pytest
from lstm_cell import lstm_cell

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba.scan_body import BodyPlan, BodySchedule, Contiguous  # noqa: E402
from graphc.backends.numba.scan_loop import NativeScan  # noqa: E402
from graphc.backends.schedule import Element, Lowering, Schedule, Storage  # noqa: E402

T, B, D, H = 5, 3, 4, 6


def lstm():
    g = gc.Graph("lstm")
    with g:
        xs = g.input("xs", (T, B, D), "float64")
        h0, c0 = g.input("h0", (B, H), "float64"), g.input("c0", (B, H), "float64")
        w, u = g.input("w", (D, 4 * H), "float64"), g.input("u", (H, 4 * H), "float64")

        (_, c_last), hs = gc.scan(lstm_cell(w, u), (h0, c0), xs)
        loss = gc.sum(hs * hs) + gc.sum(c_last)
    return g, loss, [xs, h0, c0, w, u]


def feeds(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"xs": (T, B, D), "h0": (B, H), "c0": (B, H), "w": (D, 4 * H), "u": (H, 4 * H)}
    return {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}


def native(exe):
    return [st.fn for st in exe.runtime().steps if isinstance(getattr(st, "fn", None), NativeScan)]


def test_an_lstm_body_is_scheduled_like_a_graph_and_its_plan_comes_from_the_schedule():
    g, loss, _ = lstm()
    (fn,) = native(gc.compile(g, "numba", outputs=[loss]))
    plan = fn.loop.plan
    s = plan.schedule
    assert isinstance(plan, BodyPlan) and isinstance(s, BodySchedule) and isinstance(s, Schedule)
    hows = [st.lowering for st in s.steps]
    # h @ u with its add epilogue (x @ w left the loop), the split's views, their projections, the gates
    assert hows == [Lowering.CALL, Lowering.VIEW, *[Lowering.PROJECTION] * 4, Lowering.LOOP]
    (split,) = (n for n in s.nodes.values() if n.op == "split")
    parts = s.elements[split.id]
    assert [s.alias[e] for e in parts] == [split.inputs[0].id] * 4  # each part a view of z
    assert all(s.storage[e] is Storage.STATIC and e not in s.plan.buffer_of for e in parts)
    # the column parts are strided: each copied to a contiguous planned buffer before the gates
    copies = [s.copies[p] for p in s.copies]
    assert sorted(c.of for c in copies) == sorted(
        n.id for n in s.nodes.values() if n.op == "tuple_get" and isinstance(s.alias[n.id], Element)
    )
    assert all(isinstance(c, Contiguous) and c in s.plan.buffer_of for c in copies)
    assert s.copies_before == {len(s.steps) - 1: [c.of for c in copies]}
    # the body's outputs stay in planned buffers, kept to the end; no kernel writes over its input
    assert all(s.storage[v] is Storage.STATIC for v in s.outputs) and set(s.returned) <= set(s.plan_input.keep)
    assert all(not st.inplace for st in s.plan_input.steps)
    assert plan.plan is s.plan and set(plan.buffers) == set(s.plan.buffer_of)
    names = plan.describe()
    assert names[0] == f"matmul#{s.steps[0].kernel.anchor} (np.dot)" and names[-1] == s.steps[-1].kernel.name
    # each part a column block of z's planned buffer: copied from that buffer at its offset
    assert sum(x.endswith("(contiguous copy of a block)") for x in names) == 4


def test_an_lstm_scheduled_body_gives_the_references_values_and_gradients():
    g, loss, ins = lstm()
    grads = gc.grad(loss, ins)
    exe = gc.compile(g, "numba", outputs=[loss, *grads])
    ref = gc.compile(g, "reference", outputs=[loss, *grads])
    assert len(native(exe)) == 2 and all(fn.fallback is None for fn in native(exe))
    for seed in (1, 2):
        for x, y in zip(exe(feeds(seed)), ref(feeds(seed))):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_a_nested_scan_is_a_call_of_the_outer_bodys_schedule_writing_planned_elements():
    with gc.Graph("nested") as g:
        xs = g.input("xs", (T, 2, B, D), "float64")
        h0 = g.input("h0", (B, D), "float64")

        def inner(h, x):
            h = gc.tanh(h + x)
            return h, h * 2.0

        def outer(h, x):
            h2, ys = gc.scan(inner, h, x)
            return h2, gc.sum(ys, axes=(0,))

        _, out = gc.scan(outer, h0, xs)
        loss = gc.sum(out)
    exe = gc.compile(g, "numba", outputs=[loss])
    (fn,) = native(exe)
    s = fn.loop.plan.schedule
    (step,) = (st for st in s.steps if s.nodes[st.kernel.node_ids[0]].op == "scan")
    n = step.kernel.node_ids[0]
    assert step.lowering is Lowering.CALL and step.writes == [e for e in s.elements[n] if e in s.plan.buffer_of]
    assert step.writes and all(s.storage[e] is Storage.STATIC for e in step.writes)
    xv = np.random.default_rng(3).standard_normal((T, 2, B, D)) * 0.5
    hv = np.random.default_rng(4).standard_normal((B, D)) * 0.5
    want = gc.compile(g, "reference", outputs=[loss])({"xs": xv, "h0": hv})[0]
    np.testing.assert_allclose(exe({"xs": xv, "h0": hv})[0], want, rtol=1e-12)
