"""The examples reach their stated accuracies in short, seeded runs (reference backend).

The full runs (python examples/<name>.py) use more epochs and reach the accuracies in their
docstrings; these shorter ones check lower bounds that the short runs reliably reach.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(name, *args):
    return example(name).main([*args, "--backend", "reference", "--quiet", "--seed", "0"])


def test_perceptron_separates_setosa(tmp_path, capsys):
    r = run("perceptron", "--epochs", "10", "--out", str(tmp_path))
    assert r["accuracy"] == 1.0 and r["train_accuracy"] == 1.0
    np.testing.assert_array_equal(r["predictions"], r["labels"])
    assert (tmp_path / "curves.png").exists()
    assert capsys.readouterr().out.strip().splitlines()[-1] == "test accuracy: 1.0000"


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
