"""Embedding: lookup values, the scatter-add gradient against finite differences, compiled against
the reference, and out-of-range ids as IndexRangeError on every backend; Dense on (batch, time, features)."""

import numpy as np
import pytest
from gradcheck import numeric_grad

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, DTypeError, IndexRangeError

BACKENDS = ["reference", "numba"]


def _lookup_graph(dtype="int32", batch="batch"):
    emb = nn.Embedding(5, 3, dtype="float64")
    with gc.Graph("emb", seed=1) as g:
        ids = g.input("ids", (batch, 4), dtype)
        out = emb(ids)
    return g, emb, out


def test_lookup_values_and_shape():
    g, emb, out = _lookup_graph()
    assert out.shape == ("batch", 4, 3) and out.dtype == "float64"
    assert list(emb.params) == ["embedding/w"] and emb.w.shape == (5, 3)
    w = g.values["embedding/w"]
    assert np.all(np.abs(w) <= 0.05) and w.std() > 0.01  # uniform(-0.05, 0.05)
    ids = np.array([[0, 4, 4, 2], [1, 1, 3, 0]], np.int32)
    np.testing.assert_array_equal(gc.run(g, {"ids": ids}, outputs=out), w[ids])


def test_gradient_is_a_scatter_add_matching_finite_differences():
    g, emb, out = _lookup_graph("int64", batch=2)
    with g:
        weights = gc.constant(np.random.default_rng(0).standard_normal((2, 4, 3)), "float64")
        loss = gc.sum(out * out * weights)
        (gw,) = gc.grad(loss, [emb.w])
    ids = np.array([[0, 4, 4, 2], [4, 1, 3, 0]], np.int64)  # id 4 three times: its gradients add up
    w = g.values["embedding/w"]
    analytic = gc.run(g, {"ids": ids}, outputs=gw)
    numeric = numeric_grad(lambda: float(gc.run(g, {"ids": ids}, outputs=loss)), w, 1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    assert np.abs(analytic[4]).sum() > 0


@pytest.mark.parametrize("backend", BACKENDS[1:])
def test_compiled_matches_reference(backend):
    g, emb, out = _lookup_graph()
    with g:
        (gw,) = gc.grad(gc.sum(gc.tanh(out)), [emb.w])
    ids = np.array([[0, 4, 4, 2], [1, 1, 3, 0]], np.int32)
    want = gc.compile(g, backend="reference", outputs=[out, gw])(ids=ids)
    got = gc.compile(g, backend=backend, outputs=[out, gw])(ids=ids)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [5, 7, -1])
def test_out_of_range_ids_are_an_error_on_every_backend(backend, bad):
    g, emb, out = _lookup_graph()
    with g:
        (gw,) = gc.grad(gc.sum(out), [emb.w])
    step = gc.compile(g, backend=backend, outputs=[out, gw])
    ids = np.array([[0, 1, 2, 3], [4, 0, bad, 1]], np.int32)
    msg = rf"Embedding 'embedding': index {bad} at position \(1, 2\) is out of range \[0, 5\) for axis 0 of size 5"
    with pytest.raises(IndexRangeError, match=msg + r" \(declared at .*test_embedding.py:\d+\)"):
        step(ids=ids)


def test_bad_arguments_and_float_ids():
    with pytest.raises(AttributeValueError, match=r"Embedding: vocab must be an int >= 1, got 0"):
        nn.Embedding(0, 3)
    with pytest.raises(AttributeValueError, match=r"Embedding: dim must be an int >= 1, got 2.5"):
        nn.Embedding(4, 2.5)
    with gc.Graph("f") as g:
        x = g.input("x", ("batch", 4))
        with pytest.raises(DTypeError, match=r"Embedding 'embedding' needs integer ids \(int32 or int64\), got f32"):
            nn.Embedding(4, 2)(x)


def test_dense_on_the_last_axis_of_a_sequence():
    dense = nn.Dense(2, activation="tanh")
    with gc.Graph("seq", seed=2) as g:
        x = g.input("x", ("batch", "time", 3), "float64")
        y = dense(x)
        loss = gc.sum(y * y)
        gw, gx = gc.grad(loss, [dense.w, x])
    assert y.shape == ("batch", "time", 2)
    xv = np.random.default_rng(1).standard_normal((2, 5, 3))
    w, b = g.values["dense/w"], g.values["dense/b"]
    np.testing.assert_allclose(gc.run(g, {"x": xv}, outputs=y), np.tanh(xv @ w + b), rtol=1e-12)
    analytic = gc.run(g, {"x": xv}, outputs=gw)
    numeric = numeric_grad(lambda: float(gc.run(g, {"x": xv}, outputs=loss)), w, 1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    for backend in BACKENDS:
        got = gc.compile(g, backend=backend, outputs=[y, gw, gx])(x=xv)
        want = gc.run(g, {"x": xv}, outputs=[y, gw, gx])
        for a, e in zip(got, want):
            np.testing.assert_allclose(a, e, rtol=1e-10)


def test_a_model_fed_an_unknown_id_stops_before_any_update():
    net = nn.Sequential([nn.Embedding(4, 3), nn.Flatten(), nn.Dense(2)])
    model = nn.Model(net, input_shape=(5,), input_dtype="int32", backend="reference")
    X = np.array([[0, 1, 2, 3, 3]] * 4)
    X[2, 4] = 4
    before = {k: v.copy() for k, v in model.graph.values.items()}
    with pytest.raises(IndexRangeError, match=r"Embedding 'sequential/embedding': index 4 at position \(\d, 4\) is "
                       r"out of range \[0, 4\)"):  # fmt: skip
        model.fit(X, np.zeros(4, int), batch_size=4, progress=False)
    assert model.step == 0 and all(np.array_equal(v, model.graph.values[k]) for k, v in before.items())
