"""What Model.fit / evaluate / predict accept (labels, targets, dtypes) and the errors that say
what is expected when they refuse (issue 10, items 3, 14, 15, 16 and 25)."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import GraphcError, IndexRangeError, InputError

BACKENDS = ["reference", "numba"]
rng = np.random.default_rng(0)
X = rng.normal(size=(40, 4)).astype(np.float32)
LABELS = np.arange(40) % 3


def model(backend="reference", **kw):
    kw.setdefault("optimizer", nn.optim.SGD(0.1))
    return nn.Model(nn.Sequential([nn.Dense(3)], name="n"), input_shape=(4,), backend=backend, **kw)


def fitted(X_, y_, **kw):
    m = model(**kw)
    m.fit(X_, y_, epochs=2, batch_size=8, progress=False)
    return m


def same_values(a, b):
    assert a.graph.values.keys() == b.graph.values.keys()
    for k in a.graph.values:
        np.testing.assert_array_equal(a.graph.values[k], b.graph.values[k], err_msg=k)


# -- item 3: empty datasets ---------------------------------------------------------------------
def test_empty_datasets_are_refused_naming_the_argument():
    m = model()
    with pytest.raises(InputError, match=r"training data: X has 0 samples \(shape \(0, 4\)\); at least one"):
        m.fit(X[:0], LABELS[:0], progress=False)
    with pytest.raises(InputError, match=r"evaluation data: X has 0 samples \(shape \(0, 4\)\)"):
        m.evaluate(X[:0], LABELS[:0])
    with pytest.raises(InputError, match=r"prediction data: X has 0 samples \(shape \(0, 4\)\)"):
        m.predict(np.zeros((0, 4)))
    with pytest.raises(InputError, match=r"validation data: X has 0 samples"):
        m.fit(X, LABELS, validation_data=(X[:0], LABELS[:0]), progress=False)
    with pytest.raises(InputError, match=r"training data: X and y have different lengths: X has 40 samples, y has 0"):
        m.fit(X, [], progress=False)
    assert m.epoch == 0 and m.step == 0  # nothing ran


# -- item 14: argument errors are GraphcErrors naming the argument and value ----------------------
def test_bad_seed_and_batch_size_name_the_argument():
    m = model()
    with pytest.raises(InputError, match=r"fit: seed must be an integer, got 'abc' \(str\)"):
        m.fit(X, LABELS, seed="abc", progress=False)
    with pytest.raises(InputError, match=r"fit: batch_size must be an integer >= 1, got 0"):
        m.fit(X, LABELS, batch_size=0, progress=False)
    with pytest.raises(InputError, match=r"evaluate: batch_size must be an integer >= 1, got 0"):
        m.evaluate(X, LABELS, batch_size=0)
    with pytest.raises(InputError, match=r"predict: batch_size must be an integer >= 1, got 0"):
        m.predict(X, batch_size=0)
    with pytest.raises(InputError, match=r"predict: batch_size must be an integer >= 1, got 2.5 \(float\)"):
        m.predict(X, batch_size=2.5)
    with pytest.raises(InputError, match=r"Model: seed must be an integer, got 'abc'"):
        model(seed="abc")
    assert m.epoch == 0


# -- item 15: labels ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_hot_and_column_labels_train_exactly_like_flat_labels(backend):
    flat = fitted(X, LABELS, backend=backend)
    same_values(flat, fitted(X, np.eye(3, dtype=np.float32)[LABELS], backend=backend))  # one-hot rows
    same_values(flat, fitted(X, np.eye(3, dtype=np.int64)[LABELS], backend=backend))  # integer one-hot
    same_values(flat, fitted(X, LABELS[:, None], backend=backend))  # (N, 1)
    same_values(flat, fitted(X, LABELS.astype(np.float64), backend=backend))  # whole-number floats
    same_values(flat, fitted(X, LABELS.astype(np.uint8).tolist(), backend=backend))
    assert flat.evaluate(X, np.eye(3)[LABELS]) == flat.evaluate(X, LABELS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probability_targets_train_against_the_reference_loss(backend):
    P = np.random.default_rng(1).dirichlet(np.ones(3), size=40)
    m = model(backend, targets="probabilities")
    assert m.graph.inputs["y"].type_str == "f32[batch,3]"
    before = m.evaluate(X, P)["loss"]
    m.fit(X, P, epochs=3, batch_size=8, progress=False)
    logits = m.predict(X, logits=True).astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    reference = np.mean(np.sum(P * (lse[:, None] - logits), axis=1))
    got = m.evaluate(X, P)
    assert got["loss"] == pytest.approx(reference, rel=1e-5)
    assert got["loss"] < before
    assert got["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == P.argmax(1)))
    # labels given to a probability model are one-hot encoded: the same training as one-hot rows
    a, b = model(backend, targets="probabilities"), model(backend, targets="probabilities")
    a.fit(X, LABELS, epochs=2, batch_size=8, progress=False)
    b.fit(X, np.eye(3)[LABELS], epochs=2, batch_size=8, progress=False)
    same_values(a, b)
    # and match a label model's training to rounding
    c = fitted(X, LABELS, backend=backend)
    for k in c.graph.values:
        np.testing.assert_allclose(a.graph.values[k], c.graph.values[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_probability_model_round_trips_through_a_checkpoint(tmp_path):
    P = np.random.default_rng(2).dirichlet(np.ones(3), size=40)
    m = fitted(X, P, targets="probabilities")
    m.save(tmp_path / "ckpt")
    back = nn.Model.load(tmp_path / "ckpt")
    assert back.targets == "probabilities"
    assert back.evaluate(X, P) == m.evaluate(X, P)


def test_label_errors_say_what_is_expected():
    m = model()
    P = np.full((40, 3), 1 / 3)
    msg = (
        r"training data: y has rows of shape \(3,\) that are not one-hot \(40 row\(s\), e.g. index 0, 1, 2, \.\.\.\); "
        r"a model built for class labels takes class labels of shape \(N,\) or \(N, 1\), or one-hot rows of shape "
        r"\(N, 3\)\. For probability targets build the model with nn.Model\(\.\.\., targets='probabilities'\)"
    )
    with pytest.raises(InputError, match=msg):
        m.fit(X, P, progress=False)
    with pytest.raises(InputError, match=r"y has shape \(40, 10\); the model \(3 classes\) expects class labels of "
                                         r"shape \(N,\) or \(N, 1\), or one-hot rows of shape \(N, 3\)"):  # fmt: skip
        m.fit(X, np.eye(10)[LABELS], progress=False)
    with pytest.raises(InputError, match=r"class labels must be integers 0..2 \(whole-number floats such as 1.0 are "
                                         r"accepted\), got 0.5"):  # fmt: skip
        m.fit(X, np.full(40, 0.5), progress=False)
    with pytest.raises(InputError, match=r"probability targets must be >= 0, got -0.5 in 1 row"):
        model(targets="probabilities").fit(X, np.r_[[[1.5, -0.5, 0.0]], np.eye(3)[LABELS[1:]]], progress=False)
    with pytest.raises(InputError, match=r"y is ragged"):
        m.fit(X[:2], [[1, 0, 0], [1]], progress=False)
    with pytest.raises(GraphcError, match=r"targets='probabilities' is for loss 'cross_entropy', not 'mse'"):
        model(loss="mse", targets="probabilities")


def test_a_uint64_label_of_2_pow_63_is_reported_as_itself():
    y = np.zeros(40, np.uint64)
    y[7] = 2**63
    with pytest.raises(InputError, match=r"labels must be in 0..2 \(the model has 3 classes\), got "
                                         r"9223372036854775808 at 1 sample\(s\), e.g. index 7"):  # fmt: skip
        model().fit(X, y, progress=False)


def test_one_sample_without_the_batch_axis_is_explained():
    msg = (
        r"prediction data: X has shape \(4,\): one sample without the sample axis; the model expects X of shape "
        r"\(N, 4\) \(N samples of shape \(4,\)\): for one sample pass X\[None\]"
    )
    with pytest.raises(InputError, match=msg):
        model().predict(np.ones(4))
    with pytest.raises(InputError, match=r"X has samples of shape \(2, 2\) \(X is \(40, 2, 2\)\), but the model "
                                         r"expects samples of shape \(4,\): X of shape \(N, 4\)"):  # fmt: skip
        model().predict(X.reshape(40, 2, 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_of_range_labels_name_cross_entropy_on_every_backend(backend):
    """At the graph level the run-time error names the user's op (cross_entropy), not the one_hot
    of its gradient; at the model level the check runs before training, naming the labels."""
    m = model(backend)
    with pytest.raises(IndexRangeError, match=r"^cross_entropy: label 3 at position \(1,\) is out of range \[0, 3\)"):
        m._train(x=X[:4], y=np.array([0, 3, 1, 2]))
    with pytest.raises(InputError, match=r"training data: labels must be in 0..2 .*got 3 at 1 sample"):
        m.fit(X[:4], np.array([0, 3, 1, 2]), batch_size=4, progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bad_label_in_the_gradient_alone_names_cross_entropy(backend):
    """With a static batch the loss itself is dead code in a gradient-only step; the label check
    then happens in the gradient's one_hot, which still names the user's op."""
    with gc.Graph("ce", seed=0) as g:
        x, y = g.input("x", (3, 4)), g.input("y", (3,), "int64")
        loss = nn.losses.cross_entropy(nn.Dense(5)(x), y)
    (gw, _) = gc.grad(loss, list(g.params.values()))
    step = gc.compile(g, backend, outputs=[gw])
    (got,) = step(x=X[:3], y=np.array([0, 4, 1]))
    assert got.shape == (4, 5)
    with pytest.raises(IndexRangeError, match=r"^cross_entropy: label 12 at position \(2,\) is out of range \[0, 5\)"):
        step(x=X[:3], y=np.array([0, 4, 12]))


# -- item 16: dtypes --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_float_input_takes_ints_bools_lists_and_float64(backend):
    Xi = np.random.default_rng(3).integers(0, 5, size=(40, 4))
    ref = fitted(Xi.astype(np.float32), LABELS, backend=backend)
    for data in (Xi, Xi.astype(np.uint8), Xi.astype(np.float64), Xi.tolist()):
        same_values(ref, fitted(data, LABELS, backend=backend))
    Xb = Xi > 2
    same_values(fitted(Xb.astype(np.float32), LABELS, backend=backend), fitted(Xb, LABELS, backend=backend))


def test_values_that_do_not_fit_and_non_finite_values_are_refused():
    m = model()
    big = X.astype(np.float64)
    big[3, 1] = 1e39
    with pytest.raises(InputError, match=r"training data: X value 1e\+39 at index \(3, 1\) does not fit float32"):
        m.fit(big, LABELS, progress=False)
    bad = X.copy()
    bad[5, 0] = np.nan
    with pytest.raises(InputError, match=r"evaluation data: X contains NaN .*index 5\); the model needs finite"):
        m.evaluate(bad, LABELS)
    with pytest.raises(InputError, match=r"X must be a numeric array \(floats, integers or bools\), got dtype <U1"):
        m.predict(np.full((2, 4), "a"))
    with pytest.raises(InputError, match=r"y contains inf"):
        nn.Model(nn.Dense(1), input_shape=(4,), loss="mse", backend="reference").fit(
            X, np.r_[np.inf, np.zeros(39)], progress=False
        )


def test_integer_input_takes_integers_that_fit_and_refuses_floats():
    net = nn.Sequential([nn.Lambda(lambda x: gc.cast(x, "float32")), nn.Dense(3)], name="n")
    m = nn.Model(net, input_shape=(4,), input_dtype="int32", backend="reference")
    Xi = np.random.default_rng(4).integers(0, 5, size=(40, 4))
    m.fit(Xi, LABELS, epochs=1, batch_size=8, progress=False)
    assert m.evaluate(Xi.astype(np.uint8), LABELS) == m.evaluate(Xi, LABELS)
    with pytest.raises(InputError, match=r"X must hold integers for the model's int32 input, got dtype float64"):
        m.evaluate(Xi.astype(np.float64), LABELS)
    Xi[2, 3] = 2**40
    with pytest.raises(InputError, match=r"X value 1099511627776 at index \(2, 3\) does not fit int32 "
                                         r"\(range -2147483648..2147483647\)"):  # fmt: skip
        m.evaluate(Xi, LABELS)


def test_regression_targets_take_ints_and_lists():
    Xr = np.random.default_rng(5).normal(size=(20, 2)).astype(np.float32)
    t = (Xr @ np.array([1.0, -2.0]) > 0).astype(np.int64)
    a = nn.Model(nn.Dense(1), input_shape=(2,), loss="mse", backend="reference")
    b = nn.Model(nn.Dense(1), input_shape=(2,), loss="mse", backend="reference")
    a.fit(Xr, t.astype(np.float32)[:, None], epochs=2, batch_size=5, progress=False)
    b.fit(Xr, t.tolist(), epochs=2, batch_size=5, progress=False)
    same_values(a, b)


# -- item 25: resuming to a total number of epochs ------------------------------------------------
def test_initial_epoch_resumes_to_a_total(tmp_path):
    straight = model()
    straight.fit(X, LABELS, epochs=5, batch_size=8, progress=False)
    first = model()
    first.fit(X, LABELS, epochs=2, batch_size=8, progress=False)
    first.save(tmp_path / "ckpt")
    resumed = nn.Model.load(tmp_path / "ckpt")
    resumed.fit(X, LABELS, epochs=5, initial_epoch=2, batch_size=8, progress=False)
    assert resumed.epoch == 5 and resumed.history.epochs == [1, 2, 3, 4, 5]
    same_values(straight, resumed)
    with pytest.raises(InputError, match=r"fit: initial_epoch=3, but the model has trained 5 epoch\(s\) "
                                         r"\(model.epoch\); pass initial_epoch=5 to train to epoch 8"):  # fmt: skip
        resumed.fit(X, LABELS, epochs=8, initial_epoch=3, progress=False)
    with pytest.raises(InputError, match=r"initial_epoch=5, epochs is the epoch to stop at and must be >= 5, got 4"):
        resumed.fit(X, LABELS, epochs=4, initial_epoch=5, progress=False)
    resumed.fit(X, LABELS, epochs=5, initial_epoch=5, progress=False)  # already there: trains nothing
    assert resumed.epoch == 5
