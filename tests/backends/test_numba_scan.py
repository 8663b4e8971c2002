"""Scans on the numba backend: one native loop (numba/scan_loop.py) against the reference
interpreter, values and gradients; the path taken (native, or the reference loop and why); the
driver's independence of the trip count; its disk cache across processes."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.ops import control

pytest.importorskip("numba")

from graphc.backends.numba.scan_loop import NativeScan, ScanLoop, loop_summary  # noqa: E402

T, B, D, H = 5, 3, 4, 6


def arrays(seed=0, **shapes):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}


def compare(g, outputs, feeds, rtol=1e-10, atol=1e-12, calls=2):
    """Compile g both ways and check every output, over `calls` calls (buffers are reused)."""
    ref = gc.compile(g, "reference", outputs=outputs)
    exe = gc.compile(g, "numba", outputs=outputs)
    for _ in range(calls):
        want, got = ref(feeds), exe(feeds)
        for i, (w, x) in enumerate(zip(want, got)):
            assert x.shape == w.shape and x.dtype == w.dtype, i
            np.testing.assert_allclose(x, w, rtol=rtol, atol=atol, err_msg=f"output {i}")
    return exe


def scans(exe):
    return [n for n in exe.nodes if n.op == "scan"]


def native_runs(exe, env=None):
    """The NativeScan run functions of the numba runtime's steps (those that run natively)."""
    return [st.fn for st in exe.runtime(env).steps if isinstance(getattr(st, "fn", None), NativeScan)]


def rnn_graph(reverse=False, batch=B):
    g = gc.Graph("rnn")
    with g:
        xs = g.input("xs", (T, batch, D), "float64")
        h0 = g.input("h0", (batch, H), "float64")
        w, u, b = (g.input(k, s, "float64") for k, s in (("w", (D, H)), ("u", (H, H)), ("b", (H,))))

        def cell(h, x):
            h = gc.tanh(x @ w + h @ u + b)
            return h, h

        h_last, hs = gc.scan(cell, h0, xs, reverse=reverse)
        loss = gc.sum(hs * hs) + gc.sum(h_last)
    return g, loss, [xs, h0, w, u, b]


RNN_FEEDS = {"xs": (T, B, D), "h0": (B, H), "w": (D, H), "u": (H, H), "b": (H,)}


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_tanh_rnn_values_and_gradients_equal_the_reference_and_run_natively(reverse):
    g, loss, ins = rnn_graph(reverse)
    grads = gc.grad(loss, ins)
    exe = compare(g, [loss, *grads], arrays(1, **RNN_FEEDS))
    runs = native_runs(exe)
    assert len(runs) == 2 == len(scans(exe))  # the forward scan and its gradient, a reverse scan
    for fn in runs:
        assert fn.fallback is None and fn.describe()[0].startswith("native loop: driver gk_")
        assert fn.loop.reverse in (False, True) and f"T={T}" in fn.describe()[0]
    assert sorted(fn.loop.reverse for fn in runs) == [False, True]
    summary = exe.summary()  # the kernels, then how each scan runs
    assert summary.count(": native loop: driver gk_") == 2 and "reference loop" not in summary


def test_the_native_loop_runs_no_python_per_step(monkeypatch):
    g, loss, ins = rnn_graph()
    grads = gc.grad(loss, ins)
    feeds = arrays(2, **RNN_FEEDS)
    want = gc.compile(g, "reference", outputs=[loss, *grads])(feeds)

    def refuse(*a, **k):
        raise AssertionError("the reference loop ran")

    monkeypatch.setattr(control, "run_body_step", refuse)
    got = gc.compile(g, "numba", outputs=[loss, *grads])(feeds)
    for w, x in zip(want, got):
        np.testing.assert_allclose(x, w, rtol=1e-10, atol=1e-12)


def lstm_graph(dtype="float64"):
    g = gc.Graph("lstm")
    with g:
        xs = g.input("xs", (T, "batch", D), dtype)
        h0, c0 = g.input("h0", ("batch", H), dtype), g.input("c0", ("batch", H), dtype)
        w, u = g.input("w", (D, 4 * H), dtype), g.input("u", (H, 4 * H), dtype)
        b = g.input("b", (4 * H,), dtype)

        def cell(carry, x):
            h, c = carry
            i, f, gg, o = gc.split(x @ w + h @ u + b, 4, axis=1)
            c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(gg)
            h = gc.sigmoid(o) * gc.tanh(c)
            return (h, c), h

        (h_last, c_last), hs = gc.scan(cell, (h0, c0), xs)
        loss = gc.mean(hs * hs) + gc.sum(h_last * c_last)
    return g, loss, [xs, h0, c0, w, u, b]


LSTM_FEEDS = {"xs": (T, B, D), "h0": (B, H), "c0": (B, H), "w": (D, 4 * H), "u": (H, 4 * H), "b": (4 * H,)}


def test_lstm_tuple_carry_with_split_gates_values_and_gradients():
    g, loss, ins = lstm_graph()
    grads = gc.grad(loss, ins)
    exe = compare(g, [loss, *grads], arrays(3, **LSTM_FEEDS))
    runs = native_runs(exe, {"batch": B})
    assert len(runs) == 2
    # the backward body joins the gates' gradients with an in-loop concat
    assert any("concat" in line for fn in runs for line in fn.describe())


def test_float32_lstm_matches_to_float32_rounding():
    g, loss, ins = lstm_graph("float32")
    grads = gc.grad(loss, ins)
    feeds = {k: v.astype(np.float32) for k, v in arrays(4, **LSTM_FEEDS).items()}
    exe = compare(g, [loss, *grads], feeds, rtol=2e-4, atol=1e-5)
    assert len(native_runs(exe, {"batch": B})) == 2


def test_several_xs_several_ys_a_reduction_and_a_mask_in_the_body_reverse():
    g = gc.Graph("multi")
    with g:
        xs = g.input("xs", (T, B, D), "float64")
        ms = g.input("ms", (T, B, 1), "float64")
        h0 = g.input("h0", (B, D), "float64")
        w = g.input("w", (D, D), "float64")

        def cell(h, x):
            x_t, m_t = x
            z = gc.tanh(x_t + h @ w) * m_t + h * (1.0 - m_t)
            return z, (gc.sum(z * z, axis=1), gc.max(z, axis=0), gc.mean(z))

        h_last, (norms, peaks, means) = gc.scan(cell, h0, (xs, ms), reverse=True)
        loss = gc.sum(norms) + gc.sum(peaks * peaks) + gc.sum(means) + gc.sum(h_last)
    grads = gc.grad(loss, [xs, h0, w])
    feeds = arrays(5, xs=(T, B, D), h0=(B, D), w=(D, D))
    feeds["ms"] = (np.random.default_rng(6).random((T, B, 1)) > 0.3).astype(np.float64)
    exe = compare(g, [loss, norms, peaks, means, *grads], feeds)
    assert len(native_runs(exe)) == 2


def test_length_zero_returns_init_and_empty_stacks():
    g = gc.Graph("empty")
    with g:
        xs = g.input("xs", (0, B, D), "float64")
        h0 = g.input("h0", (B, D), "float64")
        h_last, hs = gc.scan(lambda h, x: (gc.tanh(h + x), h * x), h0, xs)
    feeds = arrays(7, xs=(0, B, D), h0=(B, D))
    exe = compare(g, [h_last, hs], feeds)
    got_last, got_hs = exe(feeds)
    np.testing.assert_array_equal(got_last, feeds["h0"])
    assert got_hs.shape == (0, B, D) and not np.shares_memory(got_last, feeds["h0"])
    assert len(native_runs(exe)) == 1


def test_a_symbolic_batch_specialises_per_size_with_one_driver():
    g, loss, ins = rnn_graph(batch="batch")
    grads = gc.grad(loss, ins)
    ref = gc.compile(g, "reference", outputs=[loss, *grads])
    exe = gc.compile(g, "numba", outputs=[loss, *grads])
    sources = set()
    for batch in (2, 7):
        feeds = arrays(batch, **{**RNN_FEEDS, "xs": (T, batch, D), "h0": (batch, H)})
        for w, x in zip(ref(feeds), exe(feeds)):
            np.testing.assert_allclose(x, w, rtol=1e-10, atol=1e-12)
        sources |= {fn.loop.source for fn in native_runs(exe, {"batch": batch})}
    assert len(sources) == 2  # one driver per scan, whatever the batch: sizes are arguments


def test_nested_scan_gets_its_own_driver_called_from_the_outer_one():
    g = gc.Graph("nested")
    with g:
        xs = g.input("xs", (T, 3, B, D), "float64")
        h0 = g.input("h0", (B, D), "float64")
        w = g.input("w", (D, D), "float64")

        def outer(h, x):
            def inner(hh, xx):
                hh = gc.tanh(hh @ w + xx)
                return hh, hh * 2.0

            h_in, hs = gc.scan(inner, h, x)
            return h_in, gc.sum(hs, axis=0)

        h_last, ys = gc.scan(outer, h0, xs)
        loss = gc.sum(ys * ys) + gc.sum(h_last)
    grads = gc.grad(loss, [xs, h0, w])
    exe = compare(g, [loss, *grads], arrays(8, xs=(T, 3, B, D), h0=(B, D), w=(D, D)))
    runs = native_runs(exe)
    assert len(runs) == 2
    for fn in runs:
        text = "\n".join(fn.describe())
        assert "(nested scan)" in text and text.count("native loop: driver gk_") >= 2, text


def test_carries_swapped_scalar_and_integer_carries_and_length_only():
    g = gc.Graph("fib")
    with g:
        a0, b0 = g.input("a0", (), "float64"), g.input("b0", (), "float64")
        k0 = g.input("k0", (), "int64")

        def body(c, _):
            a, b, k = c
            return (b, a + b, k + 1), a * 2.0  # a new carry is another carry's old value

        (a, b, k), ys = gc.scan(body, (a0, b0, k0), length=9)
    feeds = {"a0": np.array(0.0), "b0": np.array(1.0), "k0": np.array(3)}
    exe = compare(g, [a, b, k, ys], feeds)
    got = exe(feeds)
    assert float(got[1]) == 55.0 and int(got[2]) == 12
    np.testing.assert_array_equal(got[3], 2.0 * np.array([0, 1, 1, 2, 3, 5, 8, 13, 21]))
    (fn,) = native_runs(exe)
    assert fn.loop.staged  # the swap goes through staging buffers


def test_a_random_op_in_the_body_falls_back_to_the_reference_loop(monkeypatch):
    g = gc.Graph("dropout")
    with g:
        xs = g.input("xs", (T, B, D), "float64")
        h0 = g.input("h0", (B, D), "float64")
        h_last, hs = gc.scan(lambda h, x: (gc.dropout(gc.tanh(h + x), 0.5, seed=3), h), h0, xs)
    exe = compare(g, [h_last, hs], arrays(9, xs=(T, B, D), h0=(B, D)), rtol=0, atol=0)
    (node,) = scans(exe)
    why = r"reference loop: dropout_mask dropout_mask#\d+ is random \(its numbers are drawn by its NumPy reference\)"
    assert re.fullmatch(why, loop_summary(node))
    assert native_runs(exe) == []
    assert re.search(r"scan#\d+: " + why, exe.summary())
    steps = []
    real = control.run_body_step
    monkeypatch.setattr(control, "run_body_step", lambda *a: steps.append(a[3]) or real(*a))
    exe(arrays(9, xs=(T, B, D), h0=(B, D)))
    assert steps == list(range(T))  # one Python call per step: the reference loop


def test_an_op_without_an_in_loop_lowering_falls_back_and_says_which():
    g = gc.Graph("pad")
    with g:
        xs = g.input("xs", (T, B, D), "float64")
        h0 = g.input("h0", (B, D), "float64")
        w = g.input("w", (D + 2, D), "float64")

        def cell(h, x):
            h = gc.tanh(gc.pad(h + x, [(0, 0), (1, 1)]) @ w)
            return h, h

        h_last, hs = gc.scan(cell, h0, xs)
    exe = compare(g, [h_last, hs], arrays(10, xs=(T, B, D), h0=(B, D), w=(D + 2, D)))
    (node,) = scans(exe)
    assert loop_summary(node).startswith("reference loop: pad pad#")
    assert loop_summary(node).endswith("has no lowering that runs inside compiled code")
    assert native_runs(exe) == []


def _scan_node(steps):
    g = gc.Graph("lengths")
    with g:
        xs = g.input("xs", (steps, B, D), "float32")
        h0 = g.input("h0", (B, D), "float32")
        w = g.input("w", (D, D), "float32")
        gc.scan(lambda h, x: (gc.tanh(h @ w + x), h), h0, xs)
    (node,) = [n for n in g.nodes if n.op == "scan"]
    return node


def test_the_driver_and_its_kernels_do_not_depend_on_the_trip_count():
    # compile time cannot grow with T if what is compiled is the same text: T is an argument
    loops = [ScanLoop(_scan_node(t), [(B, D), (t, B, D), (D, D)], [(B, D), (t, B, D), (t, B, D)]) for t in (10, 1000)]
    assert loops[0].source == loops[1].source
    assert [st.source for st in loops[0].plan.steps] == [st.source for st in loops[1].plan.steps]
    assert (loops[0].T, loops[1].T) == (10, 1000)


SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import graphc as gc
    from graphc.backends.numba import compile_stats
    g = gc.Graph("cached_rnn")
    with g:
        xs = g.input("xs", (6, 2, 3))
        h0 = g.input("h0", (2, 4))
        w, u = g.input("w", (3, 4)), g.input("u", (4, 4))
        h_last, hs = gc.scan(lambda h, x: (gc.tanh(x @ w + h @ u), h), h0, xs)
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(s).astype(np.float32) for k, s in
             (("xs", (6, 2, 3)), ("h0", (2, 4)), ("w", (3, 4)), ("u", (4, 4)))}
    got = gc.compile(g, "numba", outputs=[h_last, hs])(feeds)
    want = gc.compile(g, "reference", outputs=[h_last, hs])(feeds)
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(got, want))
    print(json.dumps({"stats": compile_stats(), "err": err}))
""")


def test_a_second_process_loads_the_driver_from_the_disk_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["GRAPHC_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")

    def run():
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert first["err"] < 1e-5 and second["err"] < 1e-5
    assert first["stats"]["compiled"] >= 1  # the driver (graphc compiles it with the body's kernels inlined)
    assert second["stats"]["compiled"] == 0 and second["stats"]["loaded"] == first["stats"]["compiled"]
    drivers = [p for p in (tmp_path / "cache").rglob("gk_*.py") if "scan driver" in p.read_text()]
    assert len(drivers) == 1
