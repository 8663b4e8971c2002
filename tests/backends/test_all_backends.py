"""The same behaviour on every registered backend, checked against the reference interpreter.

Parametrized over graphc.backends.backend_names(), so a backend that registers itself (a
future "cuda") runs these tests without editing this file. Each test builds its graph twice:
one copy for the backend under test, one for the reference, so in-place updates of one never
reach the other.
"""

import numpy as np
import pytest

import graphc as gc
from graphc.backends import backend_names

RTOL, ATOL = 2e-4, 2e-5


@pytest.fixture(params=backend_names())
def backend(request):
    return request.param


def _pair(build, backend, **options):
    """(graph, compiled for backend), (graph, compiled for the reference), from one builder."""
    g, gr = build(), build()
    return (g, gc.compile(g, backend, **options)), (gr, gc.compile(gr, "reference"))


def _close(got, want, what=""):
    assert set(got) == set(want), what
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL, err_msg=f"{what} {k}")


def _with_grads(g, loss):
    g.output("loss", loss)
    for name, gr in gc.gradients(loss).items():
        g.output(f"d/{name}", gr)


# -- models -------------------------------------------------------------------------------------
def mlp(sgd: float | None = None, loss_only: bool = False):
    with gc.Graph("mlp") as g:
        x = g.input("x", ("batch", 7))
        y = g.input("y", ("batch",), "int64")
        h = gc.tanh(x @ g.param("w0", (7, 9)) + g.param("b0", (9,), init="normal"))
        h = gc.relu(h @ g.param("w1", (9, 5)) + g.param("b1", (5,), init="normal"))
        logits = h @ g.param("w2", (5, 3)) + g.param("b2", (3,), init="normal")
        loss = gc.cross_entropy(logits, y)
        if loss_only:
            g.output("loss", loss)
        elif sgd is None:
            _with_grads(g, loss)
        else:
            g.output("loss", loss)
            for name, gr in gc.gradients(loss).items():
                g.update(name, g.params[name] - sgd * gr)
    return g


def cnn():
    with gc.Graph("cnn") as g:
        x = g.input("x", ("batch", 2, 9, 9))
        y = g.input("y", ("batch",), "int64")
        w = g.param("conv/w", (4, 2, 3, 3))
        b = g.param("conv/b", (4, 1, 1), init="normal")
        h = gc.relu(gc.conv2d(x, w, padding=1) + b)  # conv+bias+relu
        h = gc.max_pool2d(h, 2)  # odd 9x9 -> 4x4
        h = gc.reshape(h, ("batch", 64))
        logits = h @ g.param("dense/w", (64, 5)) + g.param("dense/b", (5,), init="normal")
        _with_grads(g, gc.cross_entropy(logits, y))
    return g


def _mlp_feeds(rng, n):
    return {"x": rng.standard_normal((n, 7)).astype(np.float32), "y": rng.integers(0, 3, n)}


# -- forward + backward -------------------------------------------------------------------------
def test_mlp_forward_and_backward(backend):
    (g, exe), (_, ref) = _pair(mlp, backend)
    feeds = _mlp_feeds(np.random.default_rng(0), 6)
    got, want = exe(feeds), ref(feeds)
    assert len(want) == 7  # loss and 6 gradients
    _close(got, want, backend)
    assert np.all(np.abs(want["d/w0"]) > 0).any()  # a real gradient, not zeros


def test_cnn_forward_and_backward(backend):
    (g, exe), (_, ref) = _pair(cnn, backend)
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((3, 2, 9, 9)).astype(np.float32), "y": np.array([0, 4, 2])}
    got, want = exe(feeds), ref(feeds)
    assert want["d/conv/w"].shape == (4, 2, 3, 3) and np.abs(want["d/conv/w"]).max() > 1e-4
    _close(got, want, backend)


def test_dropout_mask_changes_per_step_and_matches_the_reference(backend):
    def build():
        with gc.Graph("drop") as g:
            x = g.input("x", (4, 50))
            g.output("y", gc.dropout(gc.tanh(x) + 2.0, 0.5, seed=3) * 2.0)
        return g

    (_, exe), (_, ref) = _pair(build, backend)
    x = np.ones((4, 50), np.float32)
    outs = []
    for _ in range(3):
        got, want = exe(x=x)["y"], ref(x=x)["y"]
        np.testing.assert_allclose(got, want, rtol=RTOL)  # same step -> same mask
        outs.append(got)
    assert 0.3 < np.mean(outs[0] == 0) < 0.7
    assert not np.array_equal(outs[0] == 0, outs[1] == 0)  # a new mask every step
    # a fresh compile starts again from step 0: the same sequence of masks
    (_, again), _ = _pair(build, backend)
    np.testing.assert_array_equal(again(x=x)["y"], outs[0])


def test_in_place_updates_of_params_and_optimizer_state_over_steps(backend):
    def build():
        g = mlp(loss_only=True)
        gc.training_graph(g.outputs["loss"], gc.optim.Adam(0.05))
        return g

    (g, exe), (gr, ref) = _pair(build, backend)
    arrays = dict(g.values)
    assert len(arrays) > 6 * 3  # parameters, Adam's two moments each, and the step counter
    rng = np.random.default_rng(2)
    initial = {k: v.copy() for k, v in g.values.items()}
    for step in range(4):
        feeds = _mlp_feeds(rng, 5)
        np.testing.assert_allclose(exe(feeds)["loss"], ref(feeds)["loss"], rtol=RTOL, err_msg=f"step {step}")
        for k in g.values:
            np.testing.assert_allclose(g.values[k], gr.values[k], rtol=1e-3, atol=1e-5, err_msg=f"{k} step {step}")
    for k, a in arrays.items():
        assert g.values[k] is a, f"{k}: the variable's array was replaced, not updated in place"
    unchanged = [k for k in g.values if np.array_equal(g.values[k], initial[k])]
    assert not unchanged  # every parameter, moment and the step counter moved


def test_sgd_step_through_graph_updates(backend):
    (g, exe), (gr, ref) = _pair(lambda: mlp(sgd=0.5), backend)
    rng = np.random.default_rng(3)
    losses = []
    feeds = _mlp_feeds(rng, 8)
    for _ in range(5):
        a, b = exe(feeds)["loss"], ref(feeds)["loss"]
        np.testing.assert_allclose(a, b, rtol=1e-3)
        losses.append(float(a))
    assert losses[-1] < losses[0]  # training on one batch lowers its loss
    for k in g.values:
        np.testing.assert_allclose(g.values[k], gr.values[k], rtol=1e-3, atol=1e-5, err_msg=k)


def _reading_variables(kind):
    def build():
        with gc.Graph(kind) as g:
            x = g.input("x", (2,))
            a = g.param("a", (2,), init=np.array([1.0, 2.0], np.float32))
            b = g.param("b", (2,), init=np.array([3.0, 4.0], np.float32))
            g.output("s", gc.sum(x))
            if kind == "swap":
                g.update("a", b)
                g.update("b", a)
            elif kind == "shift":  # a's new value may be written in place, but b takes the old one
                g.update("a", a * 0.5 + x)
                g.update("b", a)
            else:  # b takes a view of the old a
                g.update("a", a * 0.5 + x)
                g.update("b", gc.reshape(gc.reshape(a, (1, 2)), (2,)))
        return g

    return build


@pytest.mark.parametrize(
    "kind, a, b", [("swap", [3, 4], [1, 2]), ("shift", [0.5, 1], [1, 2]), ("view", [0.5, 1], [1, 2])]
)
def test_an_update_that_takes_another_variable_reads_its_old_value(backend, kind, a, b):
    g = _reading_variables(kind)()
    gc.compile(g, backend, passes=False)(x=np.zeros(2, np.float32))
    np.testing.assert_array_equal(g.values["a"], a)
    np.testing.assert_array_equal(g.values["b"], b)


# -- shapes and memory ------------------------------------------------------------------------------
def test_symbolic_batch_sizes_each_get_a_specialisation(backend):
    (_, exe), (_, ref) = _pair(mlp, backend)
    rng = np.random.default_rng(4)
    for n in (4, 9, 4, 1):  # a new size compiles, an old one is reused; 1 is a size-1 dim
        feeds = _mlp_feeds(rng, n)
        got = exe(feeds)
        _close(got, ref(feeds), f"{backend} batch {n}")
        assert got["d/w0"].shape == (7, 9)


def _alias_graph():
    with gc.Graph("alias") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 3), init="normal")
        y = gc.tanh(x @ w)
        g.output("y", y)
        g.output("z", y * 2.0 + 1.0)
        g.output("r", gc.transpose(y))  # a view of another output's value
        g.update("w", w + 0.5 * gc.sum(y))
    return g


def test_outputs_are_not_aliased_across_calls(backend):
    (g, exe), (gr, ref) = _pair(_alias_graph, backend)
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((2, 4, 3)).astype(np.float32)
    first = exe(x=x1)
    kept = {k: v.copy() for k, v in first.items()}
    second = exe(x=x2)
    for k in first:  # the second call did not write into the first call's results
        np.testing.assert_array_equal(first[k], kept[k], err_msg=k)
        assert not np.shares_memory(first[k], second[k]), k
        assert not np.shares_memory(first[k], g.values["w"]), k
    for v in first.values():
        v[...] = 99.0  # writing into results changes neither the model nor the next results
    third = exe(x=x2)
    _close(first, {k: np.full_like(v, 99.0) for k, v in kept.items()})
    _close(kept, ref(x=x1), f"{backend} call 1")
    _close(second, ref(x=x2), f"{backend} call 2")
    _close(third, ref(x=x2), f"{backend} call 3")
    np.testing.assert_allclose(g.values["w"], gr.values["w"], rtol=RTOL)


def test_an_output_of_an_updated_variable_is_the_value_read(backend):
    """g.output of a parameter that g.update overwrites returns the value the step used."""

    def build():
        with gc.Graph("readvar") as g:
            x = g.input("x", ("batch", 3))
            w = g.param("w", (3, 3), init="normal")
            g.output("y", gc.tanh(x @ w))
            g.output("w_used", w)
            g.output("wt", gc.transpose(w))  # a view of it
            g.update("w", w + 1.0)
        return g

    (g, exe), _ = _pair(build, backend)
    w0 = g.values["w"].copy()
    out = exe(x=np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(g.values["w"], w0 + 1.0)
    np.testing.assert_array_equal(out["w_used"], w0)
    np.testing.assert_array_equal(out["wt"], w0.T)
    np.testing.assert_allclose(out["y"], np.tanh(np.ones((2, 3), np.float32) @ w0), rtol=RTOL)


# -- bad input ----------------------------------------------------------------------------------------
def _bad_feeds():
    x, y = np.zeros((4, 7), np.float32), np.zeros(4, np.int64)
    return {
        "missing y": {"x": x},
        "missing all": {},
        "extra": {"x": x, "y": y, "z": x},
        "misspelt": {"x": x, "Y": y},
        "wrong rank": {"x": x[0], "y": y},
        "wrong fixed dim": {"x": np.zeros((4, 8), np.float32), "y": y},
        "batch disagrees": {"x": x, "y": np.zeros(5, np.int64)},
        "float labels": {"x": x, "y": y.astype(np.float32)},
        "labels beyond int64": {"x": x, "y": np.full(4, 2**63, np.uint64)},
        "data beyond float32": {"x": np.full((4, 7), 1e39), "y": y},
        "ragged data": {"x": [[0.0] * 7, [0.0] * 6, [0.0] * 7, [0.0] * 7], "y": y},
        "strings": {"x": np.full((4, 7), "a"), "y": y},
    }


@pytest.mark.parametrize("case", list(_bad_feeds()))
def test_bad_input_raises_the_reference_error(backend, case):
    (_, exe), (_, ref) = _pair(mlp, backend)
    feeds = _bad_feeds()[case]
    with pytest.raises(gc.InputError) as want:
        ref(feeds)
    with pytest.raises(gc.InputError) as got:
        exe(feeds)
    assert str(got.value) == str(want.value)
    msg = str(want.value)
    assert "mlp" in msg or "'x'" in msg or "'y'" in msg, msg  # names the graph or the input
    # a good call still works afterwards (nothing half-written)
    good = _mlp_feeds(np.random.default_rng(6), 4)
    _close(exe(good), ref(good), backend)


def test_non_dict_feeds_raise(backend):
    (_, exe), _ = _pair(mlp, backend)
    with pytest.raises(gc.InputError, match="dict or keywords"):
        exe([np.zeros((2, 7), np.float32)])
