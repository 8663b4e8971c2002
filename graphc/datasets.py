"""Datasets that need no network: scikit-learn's bundled digits and iris, and a seeded split.

X, y = load_digits()                      # (1797, 1, 8, 8) float32 in [0, 1], int64 labels
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, seed=0, stratify=True)
"""

import importlib.util
import os

import numpy as np

from graphc.errors import InputError


def _bundled(name: str, skip_header: int) -> np.ndarray | None:
    """A CSV shipped inside scikit-learn, read without importing scikit-learn (a 3 s import)."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "datasets", "data", name)
        if os.path.exists(path):
            try:
                return np.loadtxt(path, delimiter=",", skiprows=skip_header, ndmin=2)
            except ValueError:
                return None  # an unexpected layout: let scikit-learn's loader read it
    return None


def load_digits(flat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits bundled with scikit-learn.

    Returns (X, y): X float32 of shape (N, 1, 8, 8) (or (N, 64) when `flat`), scaled from
    the 0..16 grey levels to [0, 1]; y int64 labels 0..9.
    """
    raw = _bundled("digits.csv.gz", 0)
    if raw is None or raw.shape != (1797, 65):
        from sklearn.datasets import load_digits as _load

        d = _load()
        raw = np.column_stack([d.data, d.target])
    X = (raw[:, :64].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    if flat:
        X = X.reshape(len(X), 64)
    return np.ascontiguousarray(X), raw[:, 64].astype(np.int64)


def load_iris(binary: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The 150 iris flowers bundled with scikit-learn: X float32 (150, 4), y int64 (0..2).

    Features are standardised (zero mean, unit variance per column). With `binary`, y is
    1 for setosa and 0 for the other two species: a linearly separable problem (perceptron).
    """
    raw = _bundled("iris.csv", 1)
    if raw is None or raw.shape != (150, 5):
        from sklearn.datasets import load_iris as _load

        d = _load()
        raw = np.column_stack([d.data, d.target])
    X = raw[:, :4]
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = raw[:, 4].astype(np.int64)
    if binary:
        y = (y == 0).astype(np.int64)
    return X, y


def train_test_split(X, y, test_size: float | int = 0.2, seed: int = 0, stratify: bool = False):
    """Split arrays into (X_train, X_test, y_train, y_test) with a seeded permutation.

    `test_size` is a fraction in (0, 1) or a count. With `stratify`, each label keeps its
    share in both parts (per-class rounding, so the test size may differ by a few samples).
    """
    X, y = np.asarray(X), np.asarray(y)
    n = len(X)
    if len(y) != n:
        raise InputError(f"train_test_split: X has {n} samples but y has {len(y)}")
    n_test = _count(test_size, n)
    rng = np.random.default_rng(seed)
    if stratify:
        test = []
        for label in np.unique(y):
            idx = np.flatnonzero(y == label)
            idx = idx[rng.permutation(len(idx))]
            k = int(round(len(idx) * n_test / n))
            test.append(idx[:k])
        test_idx = np.sort(np.concatenate(test))
        mask = np.ones(n, bool)
        mask[test_idx] = False
        train_idx = rng.permutation(np.flatnonzero(mask))
        test_idx = rng.permutation(test_idx)
    else:
        perm = rng.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


def _count(size, n: int) -> int:
    if isinstance(size, float) and 0.0 < size < 1.0:
        k = int(round(size * n))
    elif isinstance(size, int | np.integer) and not isinstance(size, bool) and 0 < size < n:
        k = int(size)
    else:
        raise InputError(f"test_size must be a fraction in (0, 1) or a count in 1..{n - 1}, got {size!r}")
    if not 0 < k < n:
        raise InputError(f"test_size={size!r} of {n} samples leaves an empty train or test set")
    return k
