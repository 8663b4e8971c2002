"""The sequence examples reach their stated results in short, seeded runs (reference backend).

The full runs (python examples/<name>.py) use more epochs and reach the figures in their
docstrings; these shorter ones check what the short runs reliably reach.
"""

import importlib.util
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(name, *args):
    return example(name).main([*args, "--backend", "reference", "--quiet", "--seed", "0"])


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
