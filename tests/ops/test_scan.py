"""The scan op: values against hand-unrolled loops and NumPy, gradients against central differences
(float64), the reverse scan that is its gradient, second order, nested scans, length 0."""

import numpy as np
import pytest

import graphc as gc
from tests.gradcheck import check_grad, check_second_order

T, B, D, H = 4, 2, 3, 5


def rng_arrays(seed=0, **shapes):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}


def tanh_rnn(xs, h0, w, u, b):
    def cell(h, x):
        h = gc.tanh(x @ w + h @ u + b)
        return h, h

    h_last, hs = gc.scan(cell, h0, xs)
    return gc.sum(hs * hs) + gc.sum(h_last)


RNN = {"xs": (T, B, D), "h0": (B, H), "w": (D, H), "u": (H, H), "b": (H,)}


def numpy_rnn(a):
    h, hs = a["h0"], []
    for t in range(T):
        h = np.tanh(a["xs"][t] @ a["w"] + h @ a["u"] + a["b"])
        hs.append(h)
    return h, np.stack(hs)


# -- values ---------------------------------------------------------------------------------------
def test_a_tanh_rnn_equals_numpy_on_both_backends():
    arrays = rng_arrays(**RNN)
    g = gc.Graph("rnn")
    with g:
        n = {k: g.input(k, v.shape, "float64") for k, v in arrays.items()}

        def cell(h, x):
            h = gc.tanh(x @ n["w"] + h @ n["u"] + n["b"])
            return h, h

        h_last, hs = gc.scan(cell, n["h0"], n["xs"])
    want_last, want_hs = numpy_rnn(arrays)
    for backend in ("reference", "numba"):
        got_last, got_hs = gc.compile(g, backend, outputs=[h_last, hs])(arrays)
        np.testing.assert_allclose(got_last, want_last, rtol=1e-12, err_msg=backend)
        np.testing.assert_allclose(got_hs, want_hs, rtol=1e-12, err_msg=backend)
    assert hs.shape == (T, B, H) and h_last.shape == (B, H)


def unrolled_rnn(xs, h0, w, u, b):
    h, total = h0, None
    for t in range(T):
        h = gc.tanh(xs[t] @ w + h @ u + b)
        total = gc.sum(h * h) if total is None else total + gc.sum(h * h)
    return total + gc.sum(h)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_a_scan_equals_the_loop_unrolled_by_hand_values_and_gradients(backend):
    arrays = rng_arrays(1, **RNN)
    results = []
    for build in (tanh_rnn, unrolled_rnn):
        g = gc.Graph("rnn")
        with g:
            n = {k: g.input(k, v.shape, "float64") for k, v in arrays.items()}
            loss = build(**n)
        grads = gc.grad(loss, list(n.values()))
        results.append(gc.compile(g, backend, outputs=[loss, *grads])(arrays))
    for got, want, name in zip(*results, ["loss", *arrays]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_the_gradient_is_a_reverse_scan_over_the_residuals():
    arrays = rng_arrays(**RNN)
    g = gc.Graph("rnn")
    with g:
        n = {k: g.input(k, v.shape, "float64") for k, v in arrays.items()}
        loss = tanh_rnn(**n)
    gw = gc.grad(loss, n["w"])
    scans = [x for x in g.live_nodes([gw]) if x.op == "scan"]
    assert len(scans) == 2
    fwd, back = scans
    assert fwd.attrs["reverse"] is False and back.attrs["reverse"] is True and back.is_backward
    # carries: the h cotangent and the summed gradient of w (the only captured value asked for)
    assert back.attrs["num_carry"] == 2 and [s for s, _ in back.types[:2]] == [(B, H), (D, H)]
    # xs: the stacked carry-ins (residuals) and xs of the forward scan, and the stacked ys' cotangents
    residual = back.inputs[2]
    assert residual.op == "tuple_get" and residual.inputs[0] is fwd and residual.attrs["index"] == 2
    assert back.inputs[3] is n["xs"] and back.attrs["num_xs"] == 3
    assert back.attrs["body"].graph.enclosing is g


# -- gradients against finite differences (float64) ---------------------------------------------------
def test_gradient_of_a_tanh_rnn():
    check_grad(tanh_rnn, rng_arrays(2, **RNN))


def test_gradient_of_an_lstm_like_cell_with_a_tuple_carry():
    def lstm(xs, h0, c0, w, u):
        def cell(carry, x):
            h, c = carry
            z = x @ w + h @ u
            i, f, o, gg = gc.split(z, 4, axis=1)
            c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(gg)
            h = gc.sigmoid(o) * gc.tanh(c)
            return (h, c), h

        (h, c), hs = gc.scan(cell, (h0, c0), xs)
        return gc.sum(hs * 0.5) + gc.sum(c * c) + gc.sum(h)

    arrays = rng_arrays(3, xs=(T, B, D), h0=(B, 2), c0=(B, 2), w=(D, 8), u=(2, 8))
    check_grad(lstm, arrays)


def test_gradient_of_a_body_with_a_reduction_and_a_matmul():
    def build(xs, s0, w):
        def cell(s, x):
            m = gc.softmax(x @ w, axis=-1)
            s = s + gc.sum(m * m, axis=1) * gc.mean(x)
            return s, gc.max(m, axis=0)

        s, ys = gc.scan(cell, s0, xs)
        return gc.sum(s * s) + gc.sum(gc.exp(ys))

    check_grad(build, rng_arrays(4, xs=(T, B, D), s0=(B,), w=(D, H)))


def test_gradient_of_a_reverse_scan():
    def build(xs, h0, u):
        def cell(h, x):
            h = gc.tanh(h @ u + x)
            return h, h * x

        h, ys = gc.scan(cell, h0, xs, reverse=True)
        return gc.sum(ys * ys) + gc.sum(h)

    check_grad(build, rng_arrays(5, xs=(T, B, H), h0=(B, H), u=(H, H)))


def test_a_reverse_scan_runs_from_the_end_and_keeps_ys_indexed_by_time():
    g = gc.Graph("cumsum")
    with g:
        xs = g.input("xs", (4,), "float64")
        s0 = gc.constant(0.0, "float64")
        (last, ys) = gc.scan(lambda s, x: (s + x, s + x), s0, xs, reverse=True)
        (_, fwd) = gc.scan(lambda s, x: (s + x, s + x), s0, xs)
    a = np.array([1.0, 2.0, 3.0, 4.0])
    got = gc.run(g, {"xs": a}, outputs=[last, ys, fwd])
    np.testing.assert_array_equal(got[1], [10.0, 9.0, 7.0, 4.0])
    np.testing.assert_array_equal(got[2], [1.0, 3.0, 6.0, 10.0])
    assert got[0] == 10.0


def test_gradient_of_a_nested_scan():
    def build(xs, h0, w):
        def outer(h, x_t):  # x_t: [3, D]; an inner scan over its rows
            def inner(c, row):
                c = gc.tanh(c @ w + row)
                return c, gc.sum(c)

            c, sums = gc.scan(inner, h, x_t)
            return c * 0.9, sums

        h, ys = gc.scan(outer, h0, xs)
        return gc.sum(ys * ys) + gc.sum(h)

    check_grad(build, rng_arrays(6, xs=(T, 3, D), h0=(D,), w=(D, D)))


def test_gradient_of_several_xs_a_y_tuple_and_an_unused_output():
    def build(a, b, s0):
        def cell(s, x):
            p, q = x
            s = s * p + q
            return s, (s * s, p - q)

        s, (y1, y2) = gc.scan(cell, s0, (a, b))
        return gc.sum(y1) + gc.sum(s)  # y2 gets no cotangent: it counts as zero

    check_grad(build, rng_arrays(7, a=(T, 3), b=(T, 3), s0=(3,)))


def test_gradient_with_an_integer_carry_and_length_instead_of_xs():
    g = gc.Graph("count")
    with g:
        h0 = g.input("h0", (3,), "float64")
        w = g.input("w", (3, 3), "float64")
        k0 = gc.constant(0, "int64")

        def cell(carry, x):
            assert x is None
            h, k = carry
            return (gc.tanh(h @ w) + gc.cast(k, "float64"), k + 1), k

        (h, k), ks = gc.scan(cell, (h0, k0), length=3)
        loss = gc.sum(h * h)
    grads = gc.grad(loss, [h0, w])
    a = rng_arrays(8, h0=(3,), w=(3, 3))
    got_h, got_k, got_ks, *_ = gc.run(g, a, outputs=[h, k, ks, *grads])
    want = a["h0"]
    for t in range(3):
        want = np.tanh(want @ a["w"]) + t
    np.testing.assert_allclose(got_h, want, rtol=1e-12)
    assert got_k == 3 and got_ks.tolist() == [0, 1, 2] and got_ks.dtype == np.int64
    check_grad(lambda h0, w: _count_loss(h0, w), a)


def _count_loss(h0, w):
    def cell(carry, x):
        h, k = carry
        return (gc.tanh(h @ w) + gc.cast(k, "float64"), k + 1), None

    (h, _), ys = gc.scan(cell, (h0, gc.constant(0, "int64")), length=3)
    assert ys is None
    return gc.sum(h * h)


def test_second_order_through_a_scan():
    def build(xs, h0, u):
        def cell(h, x):
            h = gc.tanh(h @ u + x)
            return h, h

        h, hs = gc.scan(cell, h0, xs)
        return gc.sum(hs * hs)

    arrays = rng_arrays(9, xs=(3, 2, 3), h0=(2, 3), u=(3, 3))
    check_second_order(build, arrays, "u")
    check_second_order(build, arrays, "xs")


def test_grad_of_grad_through_a_scan_on_numba_equals_reference():
    arrays = rng_arrays(10, **RNN)
    g = gc.Graph("rnn")
    with g:
        n = {k: g.input(k, v.shape, "float64") for k, v in arrays.items()}
        loss = tanh_rnn(**n)
        gu = gc.grad(loss, n["u"])
        penalty = gc.sum(gu * gu)
    gg = gc.grad(penalty, [n["w"], n["xs"]])
    want = gc.run(g, arrays, outputs=[penalty, *gg])
    got = gc.compile(g, "numba", outputs=[penalty, *gg])(arrays)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10)


# -- length 0 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_a_length_0_scan_returns_init_and_empty_outputs(backend):
    g = gc.Graph("empty")
    with g:
        xs = g.input("xs", (0, 2), "float64")
        h0 = g.input("h0", (2,), "float64")
        w = g.input("w", (2, 2), "float64")
        h, hs = gc.scan(lambda h, x: (gc.tanh(h @ w + x),) * 2, h0, xs)
        loss = gc.sum(h)
    gh0, gw, gxs = gc.grad(loss, [h0, w, xs])
    a = {"xs": np.zeros((0, 2)), "h0": np.array([0.5, -1.0]), "w": np.eye(2)}
    got = gc.compile(g, backend, outputs=[h, hs, gh0, gw, gxs])(a)
    np.testing.assert_array_equal(got[0], a["h0"])
    assert got[1].shape == (0, 2)
    np.testing.assert_array_equal(got[2], [1.0, 1.0])
    np.testing.assert_array_equal(got[3], np.zeros((2, 2)))
    assert got[4].shape == (0, 2)


def test_a_symbolic_time_axis_binds_when_the_graph_runs():
    g = gc.Graph("sym")
    with g:
        xs = g.input("xs", ("T", 3), "float64")
        s, ys = gc.scan(lambda s, x: (s + x, s * x), gc.constant(np.zeros(3), "float64"), xs)
        gx = gc.grad(gc.sum(ys), xs)
    assert ys.shape == ("T", 3) and gx.shape == ("T", 3)
    for steps in (0, 1, 5):
        a = np.arange(steps * 3.0).reshape(steps, 3)
        got_s, got_gx = gc.run(g, {"xs": a}, outputs=[s, gx])
        np.testing.assert_allclose(got_s, a.sum(0))
        want = np.array([a[t + 1 :].sum(0) + np.cumsum(a, 0)[t] - a[t] for t in range(steps)]).reshape(steps, 3)
        np.testing.assert_allclose(got_gx, want)


# -- training through a scan ------------------------------------------------------------------------
def rnn_training_graph():
    g = gc.Graph("train_rnn", seed=4)
    with g:
        xs = g.input("xs", (T, "batch", D))
        target = g.input("target", ("batch", H))
        w, u = g.param("w", (D, H)), g.param("u", (H, H))

        def cell(h, x):
            h = gc.tanh(x @ w + h @ u)
            return h, h

        h0 = gc.zeros_like(target)
        h, hs = gc.scan(cell, h0, xs)
        loss = gc.mean((h - target) ** 2) + 0.1 * gc.mean(hs * hs)
        g.output("loss", loss)
    gc.training_graph(loss, gc.optim.SGD(0.5, momentum=0.9))
    return g


def test_sgd_trains_through_a_scan_the_same_on_both_backends():
    rng = np.random.default_rng(11)
    feeds = {"xs": rng.standard_normal((T, 8, D)).astype("float32"),
             "target": rng.uniform(-0.5, 0.5, (8, H)).astype("float32")}  # fmt: skip
    losses = {}
    for backend in ("reference", "numba"):
        g = rnn_training_graph()
        step = gc.compile(g, backend)
        losses[backend] = [float(step(feeds)["loss"]) for _ in range(15)]
    np.testing.assert_allclose(losses["numba"], losses["reference"], rtol=1e-4)
    assert losses["reference"][-1] < 0.5 * losses["reference"][0]


def test_a_nested_scan_and_its_gradient_on_numba_equal_the_reference():
    arrays = rng_arrays(12, xs=(T, 3, D), h0=(D,), w=(D, D))
    g = gc.Graph("nested")
    with g:
        n = {k: g.input(k, v.shape, "float64") for k, v in arrays.items()}

        def outer(h, x_t):
            c, sums = gc.scan(lambda c, row: (gc.tanh(c @ n["w"] + row),) * 2, h, x_t, reverse=True)
            return c * 0.9, sums

        h, ys = gc.scan(outer, n["h0"], n["xs"])
        loss = gc.sum(ys * ys) + gc.sum(h)
    grads = gc.grad(loss, list(n.values()))
    want = gc.run(g, arrays, outputs=[loss, *grads])
    got = gc.compile(g, "numba", outputs=[loss, *grads])(arrays)
    for a, b, name in zip(got, want, ["loss", *arrays]):
        np.testing.assert_allclose(a, b, rtol=1e-10, err_msg=name)
    scans = [x for x in g.live_nodes(grads) if x.op == "scan"]
    assert len(scans) == 2  # the forward scan and its reverse scan; the inner ones live in their bodies
    inner_back = [x for x in scans[1].attrs["body"].nodes if x.op == "scan"]
    assert [x.attrs["reverse"] for x in inner_back] == [True, False]  # the inner scan recomputed, then reversed


def test_gradient_through_integer_xs_an_embedding_and_a_captured_value_returned_as_y():
    rng = np.random.default_rng(13)
    arrays = {"ids": rng.integers(0, 6, (T, 3)), "emb": rng.standard_normal((6, 2)),
              "u": rng.standard_normal((2, 2)), "h0": rng.standard_normal((3, 2))}  # fmt: skip

    def build(ids, emb, u, h0):
        def cell(h, x):
            (tok,) = x
            h = gc.tanh(gc.take(emb, tok) + h @ u)
            return h, (h, emb)  # y: a tuple, one of them the captured value itself

        _, (hs, embs) = gc.scan(cell, h0, [ids])
        assert embs.shape == (T, 6, 2)
        return gc.sum(hs * hs) + gc.sum(embs * 0.5)

    check_grad(build, arrays, wrt=["emb", "u", "h0"])


def test_second_order_through_a_nested_reverse_scan_and_a_list_carry():
    def nested(xs, h0, w):
        def outer(h, x_t):
            c, sums = gc.scan(lambda c, row: (gc.tanh(c @ w + row), gc.sum(c * c)), h, x_t)
            return c * 0.9, sums

        h, ys = gc.scan(outer, h0, xs, reverse=True)
        return gc.sum(ys * ys) + gc.sum(h)

    def cell_pair(xs, h0, c0, u):
        def cell(carry, x):
            h, c = carry
            z = x + h @ u
            c = gc.sigmoid(z) * c + gc.tanh(z)
            return [gc.tanh(c) * gc.sigmoid(z), c], h

        (h, c), hs = gc.scan(cell, [h0, c0], xs)
        return gc.sum(hs * hs) + gc.sum(c)

    check_second_order(nested, rng_arrays(14, xs=(2, 3, 2), h0=(2,), w=(2, 2)), "w")
    arrays = rng_arrays(15, xs=(3, 2, 2), h0=(2, 2), c0=(2, 2), u=(2, 2))
    check_second_order(cell_pair, arrays, "u")
    check_second_order(cell_pair, arrays, "c0")
