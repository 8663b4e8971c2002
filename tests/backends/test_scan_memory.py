"""A scan's outputs in the enclosing graph's memory plan (schedule.Element, WritesOutputs): the native
loop writes its stacked [T, ...] outputs into planned buffers, reused by liveness like any value,
the same arrays at every call; a returned output goes to an output pool."""

import numpy as np
import pytest

import graphc as gc

pytest.importorskip("numba")

from graphc.backends.numba.scan_loop import NativeScan  # noqa: E402
from graphc.backends.schedule import Element, Storage  # noqa: E402

T, B, D, H = 5, 3, 4, 6


def feeds(seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"xs": (T, B, D), "h0": (B, H), "w": (D, H), "u": (H, H)}
    return {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}


def two_scans():
    """A tanh RNN whose stacked states feed a second scan: the first's [T, ...] outputs die before
    the second writes its own."""
    g = gc.Graph("two")
    with g:
        xs = g.input("xs", (T, B, D), "float64")
        h0 = g.input("h0", (B, H), "float64")
        w, u = g.input("w", (D, H), "float64"), g.input("u", (H, H), "float64")

        def cell(h, x):
            h = gc.tanh(x @ w + h @ u)
            return h, h

        def cell2(h, x):
            h = gc.tanh(x + h @ u)
            return h, h

        _, hs = gc.scan(cell, h0, xs)
        _, hs2 = gc.scan(cell2, h0, gc.tanh(hs) * 2.0)
        loss = gc.sum(hs2 * hs2)
    return g, loss, [xs, h0, w, u]


def scan_nodes(s):
    return [n for n in s.nodes.values() if n.op == "scan"]


def test_a_scans_stacked_outputs_are_planned_buffers_reused_by_liveness():
    g, loss, _ = two_scans()
    exe = gc.compile(g, "numba", outputs=[loss])
    s = exe.runtime().schedule
    first, second = scan_nodes(s)
    for n in (first, second):
        stacked = [e for e in s.elements[n.id] if s.shape[e][:1] == (T,)]
        assert stacked and all(s.storage[e] is Storage.STATIC and e in s.plan.buffer_of for e in stacked)
        (step,) = (st for st in s.steps if n.id in st.kernel.node_ids)
        assert step.writes == [e for e in s.elements[n.id] if s.storage[e] is Storage.STATIC]
        assert all(s.plan_input.nbytes[e] == s.nbytes(e) for e in step.writes)
    # the second scan writes into buffers the first one's outputs had (they are dead by then)
    firsts = {s.plan.buffer_of[e] for e in s.elements[first.id]}
    assert firsts & {s.plan.buffer_of[e] for e in s.elements[second.id]}
    ref = gc.compile(g, "reference", outputs=[loss])
    for seed in (1, 2):
        np.testing.assert_allclose(exe(feeds(seed))[0], ref(feeds(seed))[0], rtol=1e-10)


def test_the_native_loop_writes_the_same_planned_arrays_at_every_call():
    g, loss, ins = two_scans()
    grads = gc.grad(loss, ins)
    exe = gc.compile(g, "numba", outputs=[loss, *grads])
    ref = gc.compile(g, "reference", outputs=[loss, *grads])
    rt = exe.runtime()
    s = rt.schedule
    planned = {e: rt.static[e] for es in s.elements.values() for e in es if s.storage[e] is Storage.STATIC}
    residuals = [e for n in scan_nodes(s) if not n.attrs["reverse"] for e in s.elements[n.id][-1:]]
    assert residuals and all(e in planned for e in residuals)  # the carry-ins the gradient reads
    seen = []
    for seed in (3, 4):
        got, want = exe(feeds(seed)), ref(feeds(seed))
        for x, y in zip(got, want):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
        seen.append({e: rt.static[e] for e in planned})
    assert all(seen[0][e] is seen[1][e] is planned[e] for e in planned)
    natives = [st.fn for st in rt.steps if isinstance(getattr(st, "fn", None), NativeScan)]
    assert len(natives) == 4 and all(fn.pools is None for fn in natives)  # no pool of its own: nothing allocated


def test_a_returned_stacked_output_comes_from_an_output_pool():
    g, _, _ = two_scans()
    hs = next(n for n in g.nodes if n.op == "tuple_get" and n.inputs[0].op == "scan" and n.attrs["index"] == 1)
    exe = gc.compile(g, "numba", outputs=[hs], passes=False)
    s = exe.runtime().schedule
    e = Element(hs.inputs[0].id, 1)
    assert s.alias[hs.id] == e and s.storage[e] is Storage.POOL and e in s.pool_ids and e not in s.plan.buffer_of
    ref = gc.compile(g, "reference", outputs=[hs], passes=False)
    a = exe(feeds(5))[0]
    b = exe(feeds(6))[0]  # `a` is still held: the pool hands out another array
    assert a is not b
    np.testing.assert_allclose(a, ref(feeds(5))[0], rtol=1e-12)
    np.testing.assert_allclose(b, ref(feeds(6))[0], rtol=1e-12)


def rnn(reverse=False):
    g = gc.Graph("rnn")
    with g:
        xs = g.input("xs", (T, B, D), "float64")
        h0 = g.input("h0", (B, H), "float64")
        w, u = g.input("w", (D, H), "float64"), g.input("u", (H, H), "float64")

        def cell(h, x):
            h = gc.tanh(x @ w + h @ u)
            return h, h

        h_last, hs = gc.scan(cell, h0, xs, reverse=reverse)
        loss = gc.sum(hs * hs) + gc.sum(h_last)
    return g, loss, [xs, h0, w, u]


def native_scans(exe):
    return [st.fn for st in exe.runtime().steps if isinstance(getattr(st, "fn", None), NativeScan)]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_scan_asked_for_no_gradient_stacks_no_carry_ins(reverse):
    g, loss, _ = rnn(reverse)
    (built,) = (n for n in g.nodes if n.op == "scan")
    assert built.attrs["saved"] is True and len(built.types) == 3  # h_last, hs, the stacked carry-ins
    exe = gc.compile(g, "numba", outputs=[loss])
    s = exe.runtime().schedule
    (n,) = scan_nodes(s)
    assert n.attrs["saved"] is False and [t for t, _ in n.types] == [(B, H), (T, B, H)]
    # its memory: the last carry and the stacked ys, no [T, ...] stack of carry-ins
    assert [s.shape[e] for e in s.elements[n.id]] == [(B, H), (T, B, H)]
    assert sum(s.plan_input.nbytes[e] for e in s.elements[n.id]) == 8 * (B * H + T * B * H)
    (fn,) = native_scans(exe)
    assert "RS_0[t" not in fn.loop.source and fn.fallback is None
    ref = gc.compile(g, "reference", outputs=[loss])
    np.testing.assert_allclose(exe(feeds(7))[0], ref(feeds(7))[0], rtol=1e-12)


def test_with_a_gradient_the_forward_scan_stacks_its_carry_ins_and_the_reverse_scan_does_not():
    g, loss, ins = rnn()
    grads = gc.grad(loss, ins)
    exe = gc.compile(g, "numba", outputs=[loss, *grads])
    s = exe.runtime().schedule
    fwd, back = sorted(scan_nodes(s), key=lambda n: n.attrs["reverse"])
    assert fwd.attrs["saved"] is True and back.attrs["saved"] is False
    assert s.shape[s.elements[fwd.id][-1]] == (T, B, H)  # the residuals the reverse scan reads
    assert [fn.loop.source.count("RS_0[t") for fn in native_scans(exe)] == [1, 0]
    ref = gc.compile(g, "reference", outputs=[loss, *grads])
    for x, y in zip(exe(feeds(8)), ref(feeds(8))):
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)


def test_an_evaluation_step_of_a_training_graph_stacks_no_carry_ins():
    g, loss, ins = rnn()
    with g:
        g.output("loss", loss)
        acc = g.variable("acc", (), dtype="float64")
        g.update("acc", acc + gc.sum(gc.grad(loss, [ins[3]])[0]))  # training reads dL/du: a reverse scan
        # that reads the carry-ins (dL/du sums h_{t-1}^T dz_t)
    train = gc.compile(g, "numba")
    (fwd,) = (n for n in train.nodes if n.op == "scan" and not n.attrs["reverse"])
    assert fwd.attrs["saved"] is True  # the step that trains reads the carry-ins
    ev = gc.compile(g, "numba", outputs="loss")  # not training: the updates are not applied
    assert [n.attrs["saved"] for n in ev.graph.nodes if n.op == "scan"] == [False]
    assert not ev.graph.updates and g.updates and ev.source_graph is g
    ref = gc.compile(g, "reference", outputs="loss")
    np.testing.assert_allclose(ev(feeds(9)), ref(feeds(9)), rtol=1e-12)
    assert g.values["acc"] == 0.0
    train(feeds(9))
    assert g.values["acc"] != 0.0  # the training step still writes its update
