"""The sequence examples reach their stated results in short, seeded runs (reference backend).

The full runs (python examples/<name>.py) use more epochs and reach the figures in their
docstrings; these shorter ones check what the short runs reliably reach.
"""

import re

import numpy as np
import pytest
from example_scripts import example, run


def test_forecast_sunspots_lstm_beats_persistence_and_linear_ar(tmp_path, capsys):
    r = run("forecast_sunspots", "--epochs", "40", "--out", str(tmp_path))
    rmse = r["rmse"]
    assert rmse["LSTM"] < rmse["linear AR"] < rmse["persistence"]
    # the baselines are fixed numbers of the bundled data (test years 1929-2008, 12-year windows)
    assert round(rmse["persistence"], 2) == 31.58 and round(rmse["linear AR"], 2) == 18.74
    np.testing.assert_array_equal(r["years"], np.arange(1929, 2009))
    assert (tmp_path / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"test RMSE \(1929-2008\): LSTM \d+\.\d\d, linear AR 18\.74, persistence 31\.58", last), last


def test_sequence_digits_gru_reaches_95_percent():
    r = run("sequence_digits", "--epochs", "10")
    assert r["accuracy"] >= 0.95
    assert r["model"].input_shape == (8, 8)


def test_vanishing_gradients_shrink_faster_through_simple_rnn_than_lstm(tmp_path, capsys):
    r = example("vanishing_gradients").main(
        ["--inits", "2", "--batch-size", "64", "--out", str(tmp_path), "--backend", "reference", "--seed", "0"]
    )
    rnn, lstm = r["norms"]["SimpleRNN"], r["norms"]["LSTM"]
    assert rnn.shape == lstm.shape == (100,) and np.all(rnn > 0) and np.all(lstm > 0)
    assert r["ratios"]["SimpleRNN"] < 1e-3  # x_0 gets under a thousandth of the last step's gradient
    assert r["ratios"]["LSTM"] > 10 * r["ratios"]["SimpleRNN"]
    assert lstm[0] > 3 * rnn[0]  # and more in absolute terms
    assert r["per_step"]["SimpleRNN"] < r["per_step"]["LSTM"] < 1.0
    assert (tmp_path / "gradient_norms.png").read_bytes()[:4] == b"\x89PNG"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"\|dL/dx_0\| / \|dL/dx_T-1\|: SimpleRNN \d\.\de-0\d, LSTM \d\.\de-0\d", last), last


def test_vanishing_gradients_grad_x_is_the_loss_gradient_by_finite_differences():
    """The probed gradient is d loss / d x_t itself: central differences on a tiny SimpleRNN."""
    import graphc as gc

    vg = example("vanishing_gradients")
    tg = vg.declare("SimpleRNN", steps=5, units=3, seed=1)
    run = gc.compile(tg.graph, "reference", outputs=["loss", "grad_x"], apply_updates=False)
    feeds = vg.memory_batch(np.random.default_rng(0), 2, 5)
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    grad = np.asarray(run(**feeds)[1], np.float64)
    eps = 1e-2
    for b, t in [(0, 0), (1, 2), (0, 4)]:
        hi, lo = {**feeds, "x": feeds["x"].copy()}, {**feeds, "x": feeds["x"].copy()}
        hi["x"][b, t, 0] += eps
        lo["x"][b, t, 0] -= eps
        fd = (float(run(**hi)[0]) - float(run(**lo)[0])) / (2 * eps)
        assert grad[b, t, 0] == pytest.approx(fd, rel=2e-2, abs=1e-5)


def test_text_generation_beats_the_unigram_baseline_and_samples(tmp_path, capsys):
    args = ["--max-chars", "30000", "--units", "64", "--seq-len", "32", "--epochs", "3", "--lr", "1e-2"]
    r = run("text_generation", *args, "--sample-length", "40", "--temperatures", "0,1.0", "--out", str(tmp_path))
    assert 4.0 < r["unigram_bpc"] < 4.6  # Python source: about 4.3 bits per character by frequency alone
    assert r["bpc"] < r["unigram_bpc"] - 0.5
    assert sorted(r["samples"]) == [0.0, 1.0]
    for text in r["samples"].values():
        assert len(text) == 40 and set(text) <= set(r["vocab"].chars)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "--- temperature 0.0:\ndef " + r["samples"][0.0] in out
    last = out.strip().splitlines()[-1]
    m = re.fullmatch(r"validation bits per character: (\d\.\d{3}) \(unigram baseline (\d\.\d{3})\)", last)
    assert m and float(m.group(1)) == pytest.approx(r["bpc"], abs=5e-4), last
