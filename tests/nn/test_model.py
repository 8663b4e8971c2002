"""Model: fit / evaluate / predict, history, early stopping, NaN handling, bad input, plots."""

import numpy as np
import pytest

from graphc import nn
from graphc.datasets import load_digits, load_iris, train_test_split
from graphc.errors import AttributeValueError, InputError

B = "reference"


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(flat=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, seed=0, stratify=True)
    return Xtr[:600], ytr[:600], Xte[:300], yte[:300]


def mlp(hidden=32, dropout=0.0):
    layers = [nn.Dense(hidden, activation="relu")]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential([*layers, nn.Dense(10)], name="mlp")


def test_fit_learns_digits_and_records_history(digits):
    Xtr, ytr, Xte, yte = digits
    model = nn.Model(mlp(), input_shape=(64,), optimizer=nn.optim.Adam(lr=3e-3), backend=B, seed=0)
    h = model.fit(Xtr, ytr, epochs=6, batch_size=32, validation_split=0.2, progress=False)
    assert h is model.history and len(h) == 6 and h.epochs == [1, 2, 3, 4, 5, 6]
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 6 for v in h.history.values())
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["val_accuracy"][-1] > 0.85
    result = model.evaluate(Xte, yte)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.85
    # The history's validation numbers are evaluate() on the held-out part, in eval mode.
    assert model.epoch == 6 and model.step == 6 * int(np.ceil(480 / 32))
    # A second fit continues the epoch count and the history.
    model.fit(Xtr, ytr, epochs=2, batch_size=32, validation_split=0.2, progress=False)
    assert model.history.epochs == list(range(1, 9)) and len(model.history["val_loss"]) == 8


def test_predict_probabilities_logits_and_classes(digits):
    Xtr, ytr, Xte, yte = digits
    model = nn.Model(mlp(dropout=0.5), input_shape=(64,), optimizer=nn.optim.Adam(lr=3e-3), backend=B)
    model.fit(Xtr, ytr, epochs=3, batch_size=50, progress=False)
    p = model.predict(Xte)
    assert p.shape == (300, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    logits = model.predict(Xte, logits=True)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.predict(Xte), p)  # eval mode: dropout off, deterministic
    acc = (model.predict_classes(Xte) == yte).mean()
    assert acc == pytest.approx(model.evaluate(Xte, yte)["accuracy"], abs=1e-6)


def test_seeded_runs_repeat_and_seeds_differ(digits):
    Xtr, ytr, _, _ = digits
    runs = []
    for seed in (0, 0, 1):
        m = nn.Model(mlp(dropout=0.2), input_shape=(64,), backend=B, seed=0)
        m.fit(Xtr, ytr, epochs=2, batch_size=64, seed=seed, progress=False)
        runs.append(m.history["loss"])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_early_stopping_restores_the_best_weights(digits):
    Xtr, ytr, Xte, yte = digits
    # A wide net with a high learning rate on 100 samples: validation loss bottoms out, then rises.
    model = nn.Model(mlp(256), input_shape=(64,), optimizer=nn.optim.Adam(lr=1e-2), backend=B, seed=0)
    h = model.fit(Xtr[:100], ytr[:100], epochs=40, batch_size=20, validation_data=(Xte, yte),
                  early_stopping=3, progress=False)  # fmt: skip
    assert len(h) < 40 and "early stopping" in h.stop_reason
    best = int(np.argmin(h["val_loss"]))
    assert h.best_epoch == best + 1 and len(h) == best + 1 + 3  # patience epochs after the best
    assert h["val_loss"][-1] > h["val_loss"][best]
    # The restored weights give exactly the best recorded validation loss.
    assert model.evaluate(Xte, yte)["loss"] == pytest.approx(h["val_loss"][best], rel=1e-6)


def test_early_stopping_on_training_loss_and_its_errors(digits):
    Xtr, ytr, _, _ = digits
    m = nn.Model(mlp(), input_shape=(64,), backend=B)
    with pytest.raises(InputError, match="monitors 'val_loss' but no validation data"):
        m.fit(Xtr, ytr, epochs=1, early_stopping=nn.EarlyStopping(2, monitor="val_loss"), progress=False)
    with pytest.raises(InputError, match="patience must be >= 1"):
        m.fit(Xtr, ytr, epochs=1, early_stopping=0, progress=False)
    h = m.fit(Xtr, ytr, epochs=3, early_stopping=2, progress=False)
    assert len(h) == 3 and h.best_epoch == 3  # loss keeps falling: no stop, last epoch is best


def test_nan_loss_stops_training_naming_epoch_and_step():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3)).astype(np.float32) * 10
    model = nn.Model(nn.Sequential([nn.Dense(1)]), input_shape=(3,), loss="mse", optimizer=nn.optim.GD(lr=1e4),
                     backend=B)  # fmt: skip
    before = {k: v.copy() for k, v in model.graph.values.items()}
    msg = r"loss became (nan|inf) at epoch 1, step \d+ of 8"
    with np.errstate(all="ignore"), pytest.raises(nn.TrainingError, match=msg) as info:
        model.fit(X, X.sum(1), epochs=3, batch_size=8, progress=False)
    assert info.value.epoch == 1 and 1 < info.value.step <= 8
    for k, v in model.graph.values.items():  # reset to the start of the failing epoch
        np.testing.assert_array_equal(v, before[k])
    assert model.step == 0


def test_bad_input_errors_name_the_values(digits):
    Xtr, ytr, _, _ = digits
    m = nn.Model(mlp(), input_shape=(64,), backend=B)
    bad = ytr.copy()
    bad[[3, 7]] = [10, -2]
    with pytest.raises(InputError, match=r"labels must be in 0..9 \(the model has 10 classes\), got -2, 10 at 2"):
        m.fit(Xtr, bad, epochs=1, progress=False)
    with pytest.raises(InputError, match="X has 600 samples, y has 599"):
        m.fit(Xtr, ytr[:-1], epochs=1, progress=False)
    Xn = Xtr.copy()
    Xn[5, 3] = np.nan
    with pytest.raises(InputError, match=r"training data: X contains NaN .*index 5"):
        m.fit(Xn, ytr, epochs=1, progress=False)
    with pytest.raises(InputError, match=r"validation data: X contains NaN"):
        m.fit(Xtr, ytr, epochs=1, validation_data=(Xn, ytr), progress=False)
    with pytest.raises(InputError, match=r"batch_size 601 is larger than the dataset \(600 samples\)"):
        m.fit(Xtr, ytr, epochs=1, batch_size=601, progress=False)
    with pytest.raises(InputError, match=r"samples of shape \(8, 8\).*expects samples of shape \(64,\)"):
        m.evaluate(Xtr.reshape(-1, 8, 8), ytr)
    with pytest.raises(InputError, match="not both"):
        m.fit(Xtr, ytr, validation_split=0.1, validation_data=(Xtr, ytr), progress=False)
    assert m.epoch == 0 and m.step == 0  # nothing ran


def test_bad_model_options():
    with pytest.raises(AttributeValueError, match="unknown loss 'hinge'"):
        nn.Model(mlp(), (64,), loss="hinge", backend=B)
    with pytest.raises(AttributeValueError, match="unknown optimizer 'adamx'"):
        nn.Model(mlp(), (64,), optimizer="adamx", backend=B)
    with pytest.raises(AttributeValueError, match="unknown option 'betas'"):
        nn.Model(mlp(), (64,), optimizer=nn.optim.Adam(betas=(0.9, 0.99)), backend=B)
    with pytest.raises(AttributeValueError, match="metric 'accuracy' needs a classification loss"):
        nn.Model(mlp(), (64,), loss="mse", metrics=["accuracy"], backend=B)


def test_binary_model_on_iris_setosa():
    X, y = load_iris(binary=True)
    model = nn.Model(nn.Sequential([nn.Dense(1)]), input_shape=(4,), loss="binary_cross_entropy",
                     optimizer=nn.optim.SGD(lr=0.5), backend=B)  # fmt: skip
    h = model.fit(X, y, epochs=5, batch_size=15, progress=False)
    assert h["accuracy"][-1] == 1.0
    p = model.predict(X)
    assert p.shape == (150, 1) and np.all((p > 0) & (p < 1))
    np.testing.assert_array_equal(model.predict_classes(X).ravel(), y)
    with pytest.raises(InputError, match=r"targets must be in \[0, 1\], got 2"):
        model.fit(X, y * 2, epochs=1, progress=False)


def test_mse_regression_fits_a_linear_map():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(256, 3)).astype(np.float32)
    w = np.array([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]], np.float32)
    Y = X @ w + 0.25
    model = nn.Model(nn.Sequential([nn.Dense(2)]), input_shape=(3,), loss="mse", optimizer=nn.optim.Adam(lr=0.1),
                     backend=B)  # fmt: skip
    h = model.fit(X, Y, epochs=30, batch_size=32, progress=False)
    assert set(h.history) == {"loss"}
    assert h["loss"][-1] < 1e-3
    np.testing.assert_allclose(model.predict(X), Y, atol=0.05)


def test_progress_bar_shows_loss_and_metrics(digits, capsys):
    Xtr, ytr, Xte, yte = digits
    m = nn.Model(mlp(), input_shape=(64,), backend=B)
    m.fit(Xtr, ytr, epochs=2, batch_size=100, validation_data=(Xte, yte), progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert "loss=" in err and "accuracy=" in err and "val_loss=" in err and "val_accuracy=" in err


def test_plot_history_writes_a_png(digits, tmp_path):
    Xtr, ytr, Xte, yte = digits
    m = nn.Model(mlp(), input_shape=(64,), backend=B)
    m.fit(Xtr, ytr, epochs=2, batch_size=100, validation_data=(Xte, yte), early_stopping=5, progress=False)
    path = m.plot_history(tmp_path / "sub" / "curves.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError, match="no epochs"):
        nn.Model(mlp(), input_shape=(64,), backend=B).plot_history(tmp_path / "empty.png")


def test_cnn_model_with_batchnorm_builds_and_learns():
    X, y = load_digits()
    net = nn.Sequential([nn.Conv2D(4, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2),
                         nn.Flatten(), nn.Dense(10)])  # fmt: skip
    model = nn.Model(net, input_shape=(1, 8, 8), optimizer=nn.optim.Adam(lr=1e-2), backend=B)
    running = [k for k in model.graph.values if "running" in k or "moving" in k]
    assert running, sorted(model.graph.values)
    before = {k: model.graph.values[k].copy() for k in running}
    h = model.fit(X[:400], y[:400], epochs=4, batch_size=25, validation_data=(X[400:700], y[400:700]), progress=False)
    assert h["accuracy"][-1] > 0.85 and h["val_accuracy"][-1] > 0.7
    assert any(not np.array_equal(before[k], model.graph.values[k]) for k in running)
    # Evaluation does not move the running statistics.
    after = {k: model.graph.values[k].copy() for k in running}
    model.evaluate(X[:100], y[:100])
    assert all(np.array_equal(after[k], model.graph.values[k]) for k in running)
