"""The examples reach their stated accuracies in short, seeded runs (reference backend).

The full runs (python examples/<name>.py) use more epochs and reach the accuracies in their
docstrings; these shorter ones check lower bounds that the short runs reliably reach.
"""

import re

import numpy as np
import pytest
from example_scripts import example, run


def test_perceptron_separates_setosa(tmp_path, capsys):
    r = run("perceptron", "--epochs", "10", "--out", str(tmp_path))
    assert r["accuracy"] == 1.0 and r["train_accuracy"] == 1.0
    np.testing.assert_array_equal(r["predictions"], r["labels"])
    assert (tmp_path / "curves.png").exists()
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "test accuracy: 1.0000"
    # The decision rule reads as arithmetic ("1.75*x0 - 1.60*x1 ... + 0.30"), and is the model's.
    (rule,) = [line for line in lines if line.startswith("decision rule:")]
    num = r"\d+\.\d{2}"
    m = re.fullmatch(rf"decision rule: setosa if (-?{num}\*x0(?: [+-] {num}\*x[1-3]){{3}} [+-] {num}) > 0", rule)
    assert m, rule
    printed = [float(t.split("*")[0]) for t in m.group(1).replace(" - ", " -").replace(" + ", " ").split()]
    np.testing.assert_allclose(printed, np.round(r["weights"], 2), atol=1e-9)


def test_perceptron_linear_form_joins_signs():
    linear_form = example("perceptron").linear_form
    assert linear_form([1.75, -1.6], -0.3) == "1.75*x0 - 1.60*x1 - 0.30"
    assert linear_form([-1.0, 0.004, -0.004], 2) == "-1.00*x0 + 0.00*x1 + 0.00*x2 + 2.00"


def test_mlp_digits():
    r = run("mlp_digits", "--epochs", "20")  # augmented training: a few more epochs than plain
    assert r["accuracy"] >= 0.95
    assert len(r["model"].history) == 20


def test_cnn_digits():
    r = run("cnn_digits", "--epochs", "6", "--width", "16")
    assert r["accuracy"] >= 0.95


def test_overfitting_curves_diverge_and_regularisation_closes_the_gap(tmp_path):
    runs = run("overfitting", "--epochs", "30", "--width", "256", "--out", str(tmp_path))
    plain, reg = runs["large model"], runs["dropout + early stopping"]
    h = plain["history"]
    assert h["loss"][-1] < 0.01  # memorised the training set...
    assert h["val_loss"][-1] > 1.1 * min(h["val_loss"])  # ...while validation loss climbs again
    assert reg["gap"] < 0.85 * plain["gap"]
    r = reg["history"]
    assert r.best_epoch is not None and r.best_epoch < len(r)  # an earlier epoch was restored
    assert reg["val_loss"] == pytest.approx(min(r["val_loss"]), rel=1e-6)  # best weights restored
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_tanh_rnn_learns_the_mean_of_its_sequences(capsys):
    r = example("tanh_rnn").main(["--steps", "150", "--seed", "0"])
    assert r["last"] < 0.1 * r["first"]  # a loss of about 0.05 falls below 0.005
    assert capsys.readouterr().out.startswith("loss: ")
