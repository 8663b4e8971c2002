"""Batches, validation split, input checks and the bundled datasets."""

import numpy as np
import pytest

from graphc.datasets import load_digits, load_iris, train_test_split
from graphc.errors import InputError
from graphc.nn.data import Batches, check_arrays, split_validation


def test_batches_cover_every_sample_once_per_epoch_with_seeded_orders():
    X = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10)
    b = Batches(X, y, batch_size=4, shuffle=True, seed=3)
    assert len(b) == 3
    e0 = list(b)
    e1 = list(b)
    assert [len(xb) for xb, _ in e0] == [4, 4, 2]
    seen0 = np.concatenate([yb for _, yb in e0])
    assert sorted(seen0) == list(range(10))
    np.testing.assert_array_equal(np.concatenate([xb[:, 0] for xb, _ in e0]), seen0)  # X and y stay paired
    seen1 = np.concatenate([yb for _, yb in e1])
    assert not np.array_equal(seen0, seen1)  # a new order each epoch
    again = Batches(X, y, batch_size=4, shuffle=True, seed=3)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in again.epoch_batches(1)]), seen1)
    other = Batches(X, y, batch_size=4, shuffle=True, seed=4)
    assert not np.array_equal(np.concatenate([yb for _, yb in other.epoch_batches(0)]), seen0)


def test_batches_without_shuffle_and_drop_last():
    X = np.arange(10)
    b = Batches(X, None, batch_size=3, shuffle=False, drop_last=True)
    assert len(b) == 3
    assert [list(xb) for xb, yb in b] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize("bs", [11, 0, -1, 2.5, True])
def test_batch_size_errors_name_the_value(bs):
    with pytest.raises(InputError, match=str(bs) if bs != 11 else "batch_size 11 is larger than the dataset \\(10"):
        Batches(np.zeros((10, 2)), np.zeros(10), batch_size=bs)


def test_lengths_must_agree():
    with pytest.raises(InputError, match="X has 10 samples, y has 9"):
        Batches(np.zeros((10, 2)), np.zeros(9), batch_size=2)
    with pytest.raises(InputError, match="X has 10 samples, y has 9"):
        check_arrays(np.zeros((10, 2)), np.zeros(9, np.int64), num_classes=3)


def test_check_arrays_reports_nan_inf_with_indices():
    X = np.zeros((6, 2), np.float32)
    X[4, 1] = np.nan
    with pytest.raises(InputError, match=r"X contains NaN \(1 value\(s\) in 1 sample\(s\), e.g. index 4\)"):
        check_arrays(X, np.zeros(6, np.int64), num_classes=2, what="training data")
    X[4, 1] = np.inf
    X[5, 0] = np.nan
    with pytest.raises(InputError, match="NaN and inf .* index 4, 5"):
        check_arrays(X)


def test_check_arrays_reports_labels_out_of_range():
    y = np.array([0, 1, 10, 2, -1, 10])
    with pytest.raises(
        InputError, match=r"labels must be in 0..9 \(the model has 10 classes\), got -1, 10 at 3 sample"
    ):
        check_arrays(np.zeros((6, 2)), y, num_classes=10)
    # Whole-number float labels are labels (range-checked like ints); fractional ones are refused.
    with pytest.raises(InputError, match=r"labels must be in 0..9 .*got -1, 10 at 3 sample"):
        check_arrays(np.zeros((6, 2)), y.astype(float), num_classes=10)
    with pytest.raises(InputError, match=r"class labels must be integers 0..9 \(whole-number floats such as 1.0 "
                                         r"are accepted\), got 0.5 at 1 sample\(s\), e.g. index 1"):  # fmt: skip
        check_arrays(np.zeros((3, 2)), [0.0, 0.5, 2.0], num_classes=10)


def test_check_arrays_reports_sample_shape():
    with pytest.raises(InputError, match=r"samples of shape \(64,\).*expects samples of shape \(1, 8, 8\)"):
        check_arrays(np.zeros((5, 64)), sample_shape=(1, 8, 8))
    with pytest.raises(InputError, match="numeric"):
        check_arrays(np.array(["a", "b"]))


def test_split_validation_is_seeded_and_disjoint():
    X = np.arange(100)
    Xt, yt, Xv, yv = split_validation(X, X * 2, 0.2, seed=1)
    assert len(Xv) == 20 and len(Xt) == 80
    assert set(Xt) | set(Xv) == set(range(100)) and not set(Xt) & set(Xv)
    np.testing.assert_array_equal(yv, Xv * 2)
    np.testing.assert_array_equal(split_validation(X, X, 0.2, seed=1)[2], Xv)
    assert not np.array_equal(split_validation(X, X, 0.2, seed=2)[2], Xv)
    for bad in (0.0, 1.0, 1.5, "x"):
        with pytest.raises(InputError, match="validation_split"):
            split_validation(X, X, bad)


def test_load_digits_shapes_and_range():
    X, y = load_digits()
    assert X.shape == (1797, 1, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))
    assert load_digits(flat=True)[0].shape == (1797, 64)


def test_load_iris_binary_is_setosa():
    X, y = load_iris()
    assert X.shape == (150, 4) and X.dtype == np.float32
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(X.std(0), 1, atol=1e-5)
    _, yb = load_iris(binary=True)
    assert yb.sum() == 50 and np.array_equal(yb, (y == 0).astype(np.int64))


def test_train_test_split_stratified():
    X, y = load_digits()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, seed=0, stratify=True)
    assert len(Xtr) + len(Xte) == len(X)
    assert abs(len(Xte) - 449) <= 5
    share = np.bincount(yte, minlength=10) / np.bincount(y, minlength=10)
    assert np.all(np.abs(share - 0.25) < 0.02)
    # rows stay aligned: each test image appears in X with its label
    i = 7
    j = np.flatnonzero((X == Xte[i]).all(axis=(1, 2, 3)))
    assert yte[i] in y[j]
    again = train_test_split(X, y, test_size=0.25, seed=0, stratify=True)
    np.testing.assert_array_equal(again[3], yte)
    Xtr2, Xte2, _, _ = train_test_split(X, y, test_size=100, seed=0)
    assert len(Xte2) == 100
    with pytest.raises(InputError, match="test_size"):
        train_test_split(X, y, test_size=0)
    with pytest.raises(InputError, match="1797 samples but y has 3"):
        train_test_split(X, y[:3])
