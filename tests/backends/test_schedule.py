"""The backend-neutral schedule (graphc.backends.schedule) on its own: how each kernel group runs
and where each value lives, the in-place decision for updates, and the memory plan's input.

Schedules are built straight from a graph and its fused kernels (no passes, so the nodes are
the graph's own); the in-place patterns are then run on the Numba backend against the reference.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest

import graphc as gc
from graphc.backends import plan as planning
from graphc.backends.loopgen import reduce_spec
from graphc.backends.schedule import Lowering, Schedule, Storage, readers_of, safe_in_place
from graphc.fusion import Kernel, fuse

pytest.importorskip("numba")
import graphc.backends.numba.lowerings  # noqa: E402, F401  (the numba library calls, for backend="numba")


def _schedule(g, outputs=None, backend="numba", env=None):
    outs = list(g.outputs.values()) if outputs is None else outputs
    roots = outs + list(g.updates.values())
    nodes = g.live_nodes(roots)
    kernels = fuse(nodes, roots, lambda n: reduce_spec(n) is not None)
    return Schedule(nodes, kernels, outs, dict(g.updates), env or {}, g.params, g.values, backend)


def _lowerings(s):
    return [(st.kernel.name, st.lowering) for st in s.steps]


def _small():
    with gc.Graph("small") as g:
        x = g.input("x", (4, 6))
        w = g.param("w", (6, 6), init="normal")
        h = gc.tanh(x @ w) + 1.0  # matmul with an epilogue
        v = gc.reshape(w, (36,))  # a view of the variable
        d = gc.dropout(gc.softmax(h, 1), 0.5, seed=1)  # a library call, a random op
        g.output("s", gc.sum(d * d))  # a reduction with its producer
        g.output("v", v * 2.0)  # a loop
        g.update("w", w * 0.9 + 0.1)
    return g, dict(x=x, w=w, h=h, v=v, d=d)


# -- typed steps ------------------------------------------------------------------------------
def test_each_kernel_group_of_a_small_graph_gets_its_lowering():
    g, n = _small()
    s = _schedule(g)
    assert _lowerings(s) == [
        ("k0_matmul_tanh_add", Lowering.CALL),
        ("k1_reshape", Lowering.VIEW),
        ("k2_softmax", Lowering.CALL),
        ("k3_dropout_mask", Lowering.REFERENCE),
        ("k4_mul_sum", Lowering.REDUCE),
        ("k5_mul", Lowering.LOOP),
        ("k6_mul_add", Lowering.LOOP),
    ]
    assert s.alias == {n["v"].id: n["w"].id}
    st = s.storage
    assert st[n["x"].id] is Storage.INPUT and st[n["w"].id] is Storage.STATIC
    assert st[n["v"].id] is Storage.STATIC and st[n["h"].id] is Storage.STATIC  # a view; a planned buffer
    mask = n["d"].inputs[1]  # dropout is x * mask: the mask op's reference makes a new array each call
    assert st[mask.id] is Storage.FRESH
    assert [st[o.id] for o in g.outputs.values()] == [Storage.POOL, Storage.POOL]
    assert s.pool_ids == [o.id for o in g.outputs.values()]


def test_a_backend_without_library_calls_runs_their_references():
    g, _ = _small()
    s = _schedule(g, backend="no-such-backend")
    lowering = dict(_lowerings(s))
    assert lowering["k0_matmul_tanh_add"] is Lowering.REFERENCE_ANCHOR  # the matmul's reference, the loop epilogue
    assert lowering["k2_softmax"] is Lowering.REFERENCE
    assert lowering["k4_mul_sum"] is Lowering.REDUCE and lowering["k1_reshape"] is Lowering.VIEW
    assert [k.lowering.writes_planned for k in s.steps] == [True, False, False, False, True, True, True]


def test_a_tuple_node_is_made_by_its_reference_and_keeps_its_input_alive_through_its_projections():
    with gc.Graph("t") as g:
        x = g.input("x", (4, 6))
        t = gc.tanh(x) * 2.0  # a loop into a planned buffer
        a, b = gc.split(t, 2, axis=1)  # split returns views of t
        g.output("y", gc.exp(a) @ gc.transpose(a * b, (1, 0)))
    s = _schedule(g)
    (split,) = (n for n in g.nodes if n.is_tuple)
    step_of = {v: i for i, st in enumerate(s.steps) for v in st.kernel.node_ids}
    assert s.steps[step_of[split.id]].lowering is Lowering.REFERENCE
    assert s.storage[split.id] is Storage.FRESH and s.shape[split.id] == ((4, 3), (4, 3))
    assert s.steps[step_of[a.id]].lowering is Lowering.PROJECTION  # an element of the tuple, an alias
    # the kernel reading the projections reads t's memory too: t's buffer is not reused before it
    reader = _reader_of(s, a.id)
    assert t.id in s.plan_input.steps[reader].reads and s.plan.last_use[t.id] >= reader
    xv = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    got, want = gc.compile(g, "numba", passes=False)(x=xv), gc.run(g, {"x": xv})
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5)


def test_a_projection_returned_as_an_output_keeps_the_memory_it_may_view_to_the_end():
    with gc.Graph("t") as g:
        x = g.input("x", (4, 6))
        t = gc.tanh(x) * 2.0
        a, _ = gc.split(t, 2, axis=1)
        g.output("a", a)  # a view of t's buffer, copied out after the last kernel
        u = gc.exp(x) + 1.0  # a later buffer of t's size
        g.output("v", u @ gc.transpose(u, (1, 0)))
    s = _schedule(g)
    assert t.id in s.plan_input.keep and s.plan.last_use[t.id] == len(s.steps)
    assert s.plan.buffer_of[t.id] != s.plan.buffer_of[u.id]


def test_a_tuple_node_with_a_library_call_returns_its_tuple_from_the_runtime(monkeypatch):
    from graphc.backends.numba.runtime import Runtime
    from graphc.ops.registry import get

    calls = []

    def split_call(node, in_shapes, out_shapes):  # a stand-in for a native scan: fn(*inputs) -> outputs
        calls.append(out_shapes)
        return lambda x: tuple(np.ascontiguousarray(p) for p in np.split(x, 2, axis=1))

    monkeypatch.setitem(get("split").lowerings, "test-tuple-calls", split_call)  # this test's backend only
    with gc.Graph("t") as g:
        x = g.input("x", (4, 6))
        a, b = gc.split(gc.tanh(x) * 2.0, 2, axis=1)
        g.output("y", a * b + 1.0)
    s = _schedule(g, backend="test-tuple-calls")
    (split,) = (n for n in g.nodes if n.is_tuple)
    (st,) = (st for st in s.steps if split.id in st.kernel.node_ids)
    assert st.lowering is Lowering.CALL and st.writes == [] and s.storage[split.id] is Storage.FRESH
    xv = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)
    vals = Runtime(s, g.values).run({"x": xv}, [x], 0)
    assert calls == [((4, 3), (4, 3))] and isinstance(vals[split.id], tuple)
    np.testing.assert_allclose(vals[g.outputs["y"].id], gc.run(g, {"x": xv})["y"], rtol=1e-6)


def _reader_of(s, v):
    return next(i for i, st in enumerate(s.steps) if v in st.kernel.inputs)


# -- in-place updates -------------------------------------------------------------------------
def _update_graph(pattern):
    with gc.Graph(pattern) as g:
        x = g.input("x", (4, 4))
        p = g.param("p", (4, 4), init="normal")
        g.param("q", (4, 4), init="normal")
        y = gc.sum(x)
        if pattern == "same index":
            new = p * 0.5 + x  # read only at the index written, in the update's own kernel
        elif pattern == "read later":
            new = gc.tanh(p) * 0.5 + x
            y = new @ p  # a later kernel reads the old p
        elif pattern == "read whole by the anchor":
            new = (x @ p) * 0.5 + p  # the matmul reads all of p before its epilogue writes
        elif pattern == "an output":
            new = p * 0.5 + x
            g.output("new", new)
        elif pattern == "a view is an output":
            new = p * 0.5 + x
            g.output("view", gc.reshape(p, (16,)))
        elif pattern == "a reference op":
            new = gc.concat([p[2:], p[:2]], 0)  # no numba lowering: a fresh array, copied in
        elif pattern == "one node, two variables":
            new = p * 0.5 + x
            g.update("q", new)
        elif pattern == "taken by another update":  # q takes p's old value, after the call
            new = p * 0.5 + x
            g.update("q", p)
        elif pattern == "not read":  # q's old value is read by no kernel
            new = p * 0.5 + x
            g.update("q", gc.tanh(x) + 1.0)
        g.output("y", y)
        g.update("p", new)
    return g


@pytest.mark.parametrize(
    "pattern, inplace",
    [
        ("same index", ["p"]),
        ("read later", []),
        ("read whole by the anchor", []),
        ("an output", []),
        ("a view is an output", []),
        ("a reference op", []),
        ("taken by another update", []),
        ("not read", ["p", "q"]),
        ("one node, two variables", ["q"]),
    ],
)
def test_an_update_is_written_in_place_only_when_no_later_kernel_reads_the_old_value(pattern, inplace):
    s = _schedule(_update_graph(pattern))
    assert sorted(s.inplace_updates) == inplace
    updates = set(_update_graph(pattern).updates)
    assert {v for v, _ in s.copy_updates} == updates - set(inplace)
    # and the numba step computes what the reference does, over two calls
    g, gr = _update_graph(pattern), _update_graph(pattern)
    step, ref = gc.compile(g, "numba", passes=False), gc.compile(gr, "reference")
    x = np.arange(16, dtype=np.float32).reshape(4, 4) / 16
    for _ in range(2):
        got, want = step(x=x), ref(x=x)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
        for k in gr.values:
            np.testing.assert_allclose(g.values[k], gr.values[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_safe_in_place_reads_the_kernel_order_views_and_the_anchor():
    with gc.Graph("k") as g:
        x = g.input("x", (3,))
        p = g.param("p", (3,), init="zeros")
    before = Kernel("k0", "elementwise", [9], inputs=[p.id], outputs=[9])
    same = Kernel("k1", "elementwise", [10], inputs=[p.id, x.id], outputs=[10])
    view_after = Kernel("k2", "elementwise", [13], inputs=[20], outputs=[13])  # 20: a view of p
    readers = readers_of([before, same, view_after], {20: p.id})
    assert readers[p.id] == [0, 1, 2]  # the view's reader is listed under p
    assert not safe_in_place(same, 1, p, readers, {})  # kernel 2 reads p's memory later
    readers = readers_of([before, same], {})
    assert safe_in_place(same, 1, p, readers, {})  # the earlier reader is done; itself at the same index
    opaque = Kernel("k1", "opaque", [10], inputs=[p.id], outputs=[10])
    assert not safe_in_place(opaque, 1, p, readers, {})  # may read any element of p
    fusable = Kernel("k0", "output-fusable", [11, 12], anchor=11, inputs=[p.id], outputs=[12])
    matmul_of_p = SimpleNamespace(inputs=(p,))  # the anchor reads p whole before the epilogue writes
    assert not safe_in_place(fusable, 0, p, readers_of([fusable], {}), {11: matmul_of_p})
    assert safe_in_place(fusable, 0, p, readers_of([fusable], {}), {11: SimpleNamespace(inputs=(x,))})


# -- the memory plan's input ------------------------------------------------------------------
def test_the_plan_input_lists_planned_writes_their_sizes_views_and_what_is_kept():
    g, n = _small()
    s = _schedule(g)
    pin = s.plan_input
    assert len(pin.steps) == len(s.steps)
    assert [st.writes for st in pin.steps] == [st.writes for st in s.steps]
    h_step = pin.steps[0]  # matmul into a buffer, then its epilogue tanh + 1 over it, in place
    matmul = n["h"].inputs[0].inputs[0]
    assert h_step.writes == [matmul.id, n["h"].id] and h_step.inplace == {n["h"].id: [matmul.id]}
    for v, size in pin.nbytes.items():
        node = s.node(v)
        assert size == math.prod(node.shape) * np.dtype(node.dtype).itemsize
    assert pin.alias == {n["v"].id: n["w"].id}
    # nothing a pool, a variable or a reference op holds is planned
    planned = set(pin.nbytes)
    assert not planned & (set(s.pool_ids) | set(s.inplace_updates.values()))
    assert all(s.storage[v] is Storage.STATIC for v in planned)
    assert sorted(pin.keep) == sorted(o.id for o in g.outputs.values())  # w is updated in place
    assert s.plan.buffer_of == planning.plan_memory(pin.steps, pin.nbytes, pin.alias, keep=pin.keep).buffer_of


def test_a_copied_update_is_kept_to_the_end_of_the_call():
    g = _update_graph("read later")
    s = _schedule(g)
    ((var, vid),) = s.copy_updates
    assert var == "p" and vid in s.plan_input.keep
    assert s.plan.last_use[vid] == len(s.steps)


def test_symbolic_dims_are_bound_in_the_shapes_and_the_sizes():
    with gc.Graph("b") as g:
        x = g.input("x", ("batch", 3))
        g.output("y", gc.sum(gc.exp(x) * 2.0, 1) + 1.0)
    a, b = _schedule(g, env={"batch": 2}), _schedule(g, env={"batch": 5})
    ex = next(v for v in a.plan_input.nbytes)
    assert a.shape[ex][0] == 2 and b.shape[ex][0] == 5
    assert b.plan_input.nbytes[ex] == 5 / 2 * a.plan_input.nbytes[ex]
