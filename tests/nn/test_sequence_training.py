"""Sequence training: masked per-step losses, Model(lengths=True), stateful models trained with
truncated BPTT (fit/evaluate/predict(bptt=k)), gradient clipping and the NaN guard on a
recurrent model, and the errors of each."""

import numpy as np
import pytest
from gradcheck import numeric_grad

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, GraphStructureError, IndexRangeError, InputError, TrainingError

RNG = np.random.default_rng(0)
V = 5  # vocabulary of the token tasks


def _ce(logits, labels):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, labels[..., None], -1)[..., 0]


# -- the losses -----------------------------------------------------------------------------------
def _loss_graph():
    with gc.Graph("seq_losses") as g:
        logits = g.input("logits", (2, 4, 3), "float64")
        labels = g.input("labels", (2, 4), "int64")
        pred = g.input("pred", (2, 4, 2), "float64")
        target = g.input("target", (2, 4, 2), "float64")
        lengths = g.input("lengths", (2,), "int32")
        ce = nn.losses.sequence_cross_entropy(logits, labels, lengths)
        mse = nn.losses.sequence_mse(pred, target, lengths)
        acc = nn.losses.sequence_accuracy(logits, labels, lengths)
        grads = gc.grad(ce + mse, [logits, pred])
    return g, [ce, mse, acc, *grads]


def _loss_feeds():
    target = RNG.standard_normal((2, 4, 2))
    target[0, 3] = np.nan  # padded: never read
    return {
        "logits": RNG.standard_normal((2, 4, 3)),
        "labels": np.array([[0, 2, 1, -1], [2, 2, 9, 7]]),  # padded labels out of range: never read
        "pred": RNG.standard_normal((2, 4, 2)),
        "target": target,
        "lengths": np.array([3, 2], np.int32),
    }


def test_masked_losses_count_the_valid_steps_only():
    g, outs = _loss_graph()
    f = _loss_feeds()
    ce, mse, acc = gc.run(g, f, outputs=outs[:3])
    valid = np.arange(4)[None, :] < f["lengths"][:, None]
    per = _ce(f["logits"], np.where(valid, f["labels"], 0))
    assert ce == pytest.approx(per[valid].mean(), rel=1e-12)
    sq = ((f["pred"] - np.nan_to_num(f["target"])) ** 2).mean(-1)
    assert mse == pytest.approx(sq[valid].mean(), rel=1e-12)
    hits = f["logits"].argmax(-1) == f["labels"]
    assert acc == pytest.approx(hits[valid].mean(), rel=1e-6)


def test_masked_loss_gradients_match_finite_differences_and_compile():
    g, outs = _loss_graph()
    f = _loss_feeds()
    f["target"][0, 3] = 0.0  # finite, so that differences through every input are defined
    loss = outs[0] + outs[1]
    analytic = gc.run(g, f, outputs=outs[3:])
    for name, got in zip(["logits", "pred"], analytic):
        numeric = numeric_grad(lambda: float(gc.run(g, f, outputs=loss)), f[name], 1e-6)
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-9, err_msg=name)
    assert np.all(analytic[0][0, 3] == 0) and np.all(analytic[1][1, 2:] == 0)  # padded steps: no gradient
    compiled = gc.compile(g, backend="numba", outputs=outs)(**f)
    for a, e in zip(compiled, gc.run(g, f, outputs=outs)):
        np.testing.assert_allclose(a, e, rtol=1e-10)


def test_masked_loss_errors():
    g, outs = _loss_graph()
    f = _loss_feeds()
    f["lengths"] = np.array([3, 5], np.int32)
    with pytest.raises(IndexRangeError, match=r"sequence_cross_entropy: sequence lengths must lie in \[0, 4\] \(the "
                       r"time axis has 4 steps\), got 5 at \(1,\)"):  # fmt: skip
        gc.run(g, f, outputs=outs[0])
    with gc.Graph("bad") as g2:
        logits = g2.input("l", (2, 4, 3))
        with pytest.raises(gc.ShapeError, match=r"sequence_cross_entropy: targets i64\[2,3\] do not match the outputs "
                           r"f32\[2,4,3\]: need shape \[2,4\]"):  # fmt: skip
            nn.losses.sequence_cross_entropy(logits, g2.input("y", (2, 3), "int64"))
        with pytest.raises(gc.ShapeError, match=r"sequence_cross_entropy: lengths i32\[3\] do not match the batch"):
            nn.losses.sequence_cross_entropy(logits, g2.input("z", (2, 4), "int64"), g2.input("n", (3,), "int32"))


# -- Model(lengths=True) --------------------------------------------------------------------------
def _token_model(stateful=False, lengths=True, backend="reference", lr=0.05, clip_norm=None, seed=0):
    net = nn.Sequential([nn.Embedding(V, 4), nn.GRU(6, return_sequences=True), nn.Dense(V)])
    return nn.Model(net, input_shape=(None,), input_dtype="int32", lengths=lengths, stateful=stateful,
                    optimizer=nn.optim.SGD(lr, clip_norm=clip_norm), backend=backend, seed=seed)  # fmt: skip


def _token_data(n=8, steps=6):
    X = RNG.integers(0, V, (n, steps))
    y = (X + 1) % V  # the next id: each step's target follows from its input
    lengths = RNG.integers(1, steps + 1, n)
    lengths[0] = steps
    return X, y, lengths


def test_padded_steps_count_neither_in_the_loss_nor_in_the_outputs():
    model = _token_model()
    X, y, L = _token_data()
    pad = np.arange(X.shape[1])[None, :] >= L[:, None]
    X2, y2 = np.where(pad, (X + 3) % V, X), np.where(pad, -1, y)  # other ids in the padding; labels -1 there
    first = model.evaluate(X, y, lengths=L)
    assert model.evaluate(X2, y2, lengths=L) == first
    logits = model.predict(X, lengths=L, logits=True)
    np.testing.assert_array_equal(logits, model.predict(X2, lengths=L, logits=True))
    assert first["loss"] == pytest.approx(_ce(logits.astype(np.float64), y)[~pad].mean(), rel=1e-5)
    assert first["accuracy"] == pytest.approx((logits.argmax(-1) == y)[~pad].mean(), rel=1e-6)
    full = model.evaluate(X, y)  # no lengths: every step counts (and the padding is read as input)
    logits = model.predict(X, logits=True).astype(np.float64)
    assert full["loss"] == pytest.approx(_ce(logits, y).mean(), rel=1e-5) and full["loss"] != first["loss"]


def test_a_classifier_of_padded_sequences_reads_each_up_to_its_length():
    model = nn.Model(nn.Sequential([nn.GRU(5), nn.Dense(3)]), input_shape=(None, 2), lengths=True,
                     backend="reference")  # fmt: skip
    X, L = RNG.standard_normal((4, 6, 2)), np.array([6, 2, 4, 1])
    padded = model.predict(X, lengths=L)
    for i in range(4):  # the same as the sequence cut at its length, without padding
        np.testing.assert_allclose(padded[i], model.predict(X[i : i + 1, : L[i]])[0], rtol=1e-6)
    assert not np.allclose(padded[1], model.predict(X[1:2])[0])


def test_fit_with_lengths_learns_and_validation_takes_lengths():
    model = _token_model(lr=0.5)
    X, y, L = _token_data(n=32)
    before = model.evaluate(X, y, lengths=L)["loss"]
    h = model.fit(X, y, lengths=L, epochs=4, batch_size=8, progress=False, validation_data=(X[:8], y[:8], L[:8]))
    assert h["loss"][-1] < before and "val_accuracy" in h
    h = model.fit(X, y, lengths=L, epochs=1, batch_size=8, progress=False, validation_split=0.25)
    assert len(h["val_loss"]) == 5


def test_lengths_data_errors():
    model = _token_model()
    X, y, L = _token_data()
    with pytest.raises(InputError, match=r"training data: lengths must lie in \[0, 6\] \(X has 6 steps\), got 7 at "
                       r"index 2"):  # fmt: skip
        model.fit(X, y, lengths=np.array([6, 6, 7, 1, 1, 1, 1, 1]), progress=False)
    with pytest.raises(InputError, match=r"evaluation data: lengths must be integers of shape \(8,\)"):
        model.evaluate(X, y, lengths=L[:3])
    y_bad = y.copy()
    y_bad[0, 0] = 5
    with pytest.raises(InputError, match=r"labels must be in 0..4 \(the model has 5 classes\), got 5 at \S+ \(0, 0\)"):
        model.evaluate(X, y_bad, lengths=L)
    plain = _token_model(lengths=False)
    with pytest.raises(InputError, match=r"prediction data: lengths given, but the model was built without "
                       r"lengths=True"):  # fmt: skip
        plain.predict(X, lengths=L)


# -- stateful models and truncated BPTT -----------------------------------------------------------
def test_state_carries_across_windows():
    model = _token_model(stateful=True)
    X, y, L = _token_data()
    whole = model.evaluate(X, y, lengths=L)
    for k in (1, 2, 4):
        windowed = model.evaluate(X, y, lengths=L, bptt=k)
        assert windowed["loss"] == pytest.approx(whole["loss"], rel=1e-5)
        assert windowed["accuracy"] == pytest.approx(whole["accuracy"], rel=1e-6)
    np.testing.assert_allclose(model.predict(X, lengths=L, bptt=4), model.predict(X, lengths=L), rtol=1e-5, atol=1e-7)


def test_bptt_trains_each_window_from_the_state_before_it():
    X, y, L = _token_data(n=4)
    model = _token_model(stateful=True, lr=0.3)
    model.fit(X, y, lengths=L, epochs=1, batch_size=4, shuffle=False, progress=False, bptt=4)
    assert model.step == 2  # two windows of one batch: two updates
    by_hand = _token_model(stateful=True, lr=0.3)
    step = by_hand.train_step
    state = by_hand.sequences.zero_state(4)
    for start in (0, 4):
        w = slice(start, start + 4)
        lw = np.clip(L - start, 0, 4).astype(np.int32)
        outs = step(x=X[:, w], y=y[:, w], lengths=lw, **state)
        state = dict(zip(by_hand.sequences.state, outs[2:]))
    for k in model.graph.trainable():
        np.testing.assert_allclose(model.graph.values[k], by_hand.graph.values[k], rtol=1e-6, err_msg=k)
    whole = _token_model(stateful=True, lr=0.3)
    whole.fit(X, y, lengths=L, epochs=1, batch_size=4, shuffle=False, progress=False)
    assert whole.step == 1
    assert not np.allclose(whole.graph.values["sequential/dense/w"], model.graph.values["sequential/dense/w"])


def test_forecasting_model_trains_with_bptt_and_clip_norm():
    series = np.sin(np.arange(0, 40) * 0.4)[None, :, None].repeat(4, 0) + RNG.normal(0, 0.01, (4, 40, 1))
    net = nn.Sequential([nn.LSTM(8, return_sequences=True), nn.Dense(1)])
    model = nn.Model(net, input_shape=(None, 1), loss="mse", stateful=True, backend="reference",
                     optimizer=nn.optim.Adam(0.02, clip_norm=1.0))  # fmt: skip
    X, y = series[:, :-1], series[:, 1:]
    before = model.evaluate(X, y)["loss"]
    model.fit(X, y, epochs=8, batch_size=4, progress=False, bptt=13)
    assert model.step == 8 * 3
    assert model.evaluate(X, y, bptt=13)["loss"] < before / 2


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow the guard is there to catch
def test_nan_guard_names_epoch_and_step_for_a_recurrent_model():
    net = nn.Sequential([nn.GRU(4, return_sequences=True), nn.Dense(1)])
    model = nn.Model(net, input_shape=(None, 1), loss="mse", stateful=True, backend="reference",
                     optimizer=nn.optim.SGD(1e12))  # fmt: skip
    X, y = RNG.standard_normal((16, 6, 1)), RNG.standard_normal((16, 6, 1))
    before = {k: model.graph.values[k].copy() for k in model.graph.trainable()}
    with pytest.raises(TrainingError, match=r"training stopped: the loss became (nan|inf) at epoch 1, step \d of 4 "
                       r"\(global step \d+\); the model was reset"):  # fmt: skip
        model.fit(X, y, epochs=2, batch_size=4, progress=False, bptt=3)
    for k, v in before.items():
        np.testing.assert_array_equal(model.graph.values[k], v)


def test_stateful_and_bptt_errors():
    X, y, L = _token_data()
    with pytest.raises(AttributeValueError, match=r"fit: bptt=2 needs a model built with stateful=True"):
        _token_model().fit(X, y, lengths=L, bptt=2, progress=False)
    one = nn.Model(nn.Sequential([nn.GRU(4), nn.Dense(1)]), input_shape=(None, 2), loss="mse", stateful=True,
                   backend="reference")  # fmt: skip
    with pytest.raises(AttributeValueError, match=r"fit: bptt=3 needs per-step outputs and targets"):
        one.fit(np.zeros((4, 6, 2)), np.zeros((4, 1)), bptt=3, progress=False)
    with pytest.raises(AttributeValueError, match=r"stateful model: GRU 'sequential(_\d)?/gru' is bidirectional"):
        nn.Model(nn.Sequential([nn.GRU(4, bidirectional=True), nn.Dense(1)]), input_shape=(None, 2), loss="mse",
                 stateful=True)  # fmt: skip
    with pytest.raises(GraphStructureError, match=r"stateful model: the network Sequential .* has no recurrent layer"):
        nn.Model(nn.Sequential([nn.Dense(3), nn.Dense(1)]), input_shape=(None, 2), loss="mse", stateful=True)
    with pytest.raises(AttributeValueError, match=r"Model: input_shape \(4, None\): only the first axis"):
        nn.Model(nn.Dense(1), input_shape=(4, None), loss="mse")
    with pytest.raises(AttributeValueError, match=r"Model: lengths and stateful are for sequences \(batch, time, "
                       r"features\), got x f32\[batch,4\]"):  # fmt: skip
        nn.Model(nn.Dense(1), input_shape=(4,), loss="mse", lengths=True)
    with pytest.raises(AttributeValueError, match=r"Model: per-step binary_cross_entropy with lengths is not"):
        nn.Model(nn.Sequential([nn.GRU(3, return_sequences=True), nn.Dense(1)]), input_shape=(None, 2),
                 loss="binary_cross_entropy", lengths=True)  # fmt: skip
