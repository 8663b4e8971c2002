"""Sequence data: the bundled sunspots, forecasting windows and baselines, digits as rows, the text corpus."""

import sysconfig

import numpy as np
import pytest

from graphc.datasets import load_digits
from graphc.datasets_sequences import (
    SUNSPOTS_CSV,
    CharVocab,
    LinearAR,
    forecast_windows,
    load_digit_sequences,
    load_sunspots,
    next_char_windows,
    persistence_forecast,
    read_corpus,
    rmse,
    stdlib_files,
    unigram_bits_per_char,
)
from graphc.errors import InputError


def test_sunspots_are_the_yearly_series_1700_2008_with_its_source_named():
    years, counts = load_sunspots()
    np.testing.assert_array_equal(years, np.arange(1700, 2009))
    assert counts.dtype == np.float32 and counts.shape == (309,)
    # statsmodels' values at a few known years (its sunspots.csv)
    assert (counts[0], counts[1957 - 1700], counts[-1]) == (5.0, np.float32(190.2), np.float32(2.9))
    header = SUNSPOTS_CSV.read_text().split("year,sunspots")[0]
    assert "statsmodels" in header and "BSD 3-Clause" in header and "public domain" in header


def test_a_missing_sunspots_file_is_a_clear_error(tmp_path, monkeypatch):
    import graphc.datasets_sequences as ds

    monkeypatch.setattr(ds, "SUNSPOTS_CSV", tmp_path / "sunspots.csv")
    with pytest.raises(InputError, match=r"the bundled data file .*sunspots\.csv is missing .*pip install -e \."):
        load_sunspots()
    (tmp_path / "sunspots.csv").write_text("# header\nyear,count\n1700,5\n")
    with pytest.raises(InputError, match="should start with 'year,sunspots', got 'year,count'"):
        load_sunspots()


def test_forecast_windows_pair_each_window_with_the_next_value():
    X, y = forecast_windows(np.arange(10.0), 3)
    assert X.shape == (7, 3, 1) and y.shape == (7, 1)
    np.testing.assert_array_equal(X[2, :, 0], [2, 3, 4])
    assert y[2, 0] == 5
    np.testing.assert_array_equal(persistence_forecast(X), X[:, -1, :])
    with pytest.raises(InputError, match=r"window must be an int in 1\.\.9, got 10"):
        forecast_windows(np.arange(10.0), 10)
    with pytest.raises(InputError, match=r"series must be 1-D, got shape \(2, 5\)"):
        forecast_windows(np.zeros((2, 5)), 2)


def test_linear_ar_recovers_a_linear_recurrence_and_rmse_checks_shapes():
    s = [1.0, 2.0]
    for _ in range(40):
        s.append(0.5 * s[-1] - 0.25 * s[-2] + 3.0)
    X, y = forecast_windows(np.array(s), 2)
    ar = LinearAR().fit(X, y)
    np.testing.assert_allclose(ar.coef.ravel(), [-0.25, 0.5, 3.0], atol=1e-4)
    assert rmse(ar.predict(X), y) < 1e-4
    assert rmse(persistence_forecast(X), y) > 0.1
    with pytest.raises(InputError, match=r"rmse: predictions \(3,\) and targets \(3, 1\) differ in shape"):
        rmse(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(InputError, match="call fit first"):
        LinearAR().predict(X)


def test_digit_sequences_are_the_rows_of_the_images():
    X, y = load_digit_sequences()
    images, labels = load_digits()
    assert X.shape == (1797, 8, 8) and X.dtype == np.float32
    np.testing.assert_array_equal(X[5], images[5, 0])  # step t is row t
    np.testing.assert_array_equal(y, labels)


def test_default_corpus_is_the_installed_standard_library_in_name_order():
    files = stdlib_files()
    assert files == sorted(files) and all(not f.name.startswith("_") for f in files)
    assert all(str(f).startswith(sysconfig.get_paths()["stdlib"]) for f in files)
    text = read_corpus(max_chars=50_000)
    assert len(text) == 50_000
    assert text == read_corpus(max_chars=60_000)[:50_000]  # deterministic: the same prefix
    assert text.startswith(files[0].read_text()[:200].replace("\t", "    "))
    assert set(text) <= set("\n" + "".join(map(chr, range(32, 127))))


def test_corpus_from_a_named_file_and_its_errors(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("héllo world")
    assert read_corpus(f, max_chars=5) == "héllo"
    with pytest.raises(InputError, match="no such file"):
        read_corpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_corpus(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="max_chars must be a positive int, got 0"):
        read_corpus(max_chars=0)


def test_char_vocab_round_trips_and_names_unknown_characters():
    v = CharVocab.from_text("hello world")
    assert v.chars == " dehlorw" and len(v) == 8
    ids = v.encode("low")
    np.testing.assert_array_equal(ids, [4, 5, 7])
    assert v.decode(ids) == "low"
    with pytest.raises(InputError, match=r"2 character\(s\) not in the vocabulary: 'x', 'z'"):
        v.encode("zox")
    with pytest.raises(InputError, match=r"id 8 outside 0\.\.7"):
        v.decode([8])


def test_next_char_windows_shift_by_one_and_unigram_baseline():
    ids = np.arange(11)
    inputs, targets = next_char_windows(ids, 4)
    np.testing.assert_array_equal(inputs, [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(targets, inputs + 1)
    assert next_char_windows(ids, 4, step=2)[0].shape == (4, 4)
    with pytest.raises(InputError, match="11 ids are too few for one window of 11"):
        next_char_windows(ids, 11)
    # uniform frequencies over 4 symbols: exactly 2 bits per character
    assert unigram_bits_per_char([0, 1, 2, 3], [3, 2, 1, 0], 4) == pytest.approx(2.0)
