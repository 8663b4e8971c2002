"""Arrays in, mini-batches out; and the checks that catch bad training data before it runs.

    for xb, yb in Batches(X, y, batch_size=32, shuffle=True, seed=0):
        step(x=xb, y=yb)

Shuffling is seeded per epoch (`numpy.random.default_rng([seed, epoch])`), so epoch k
sees the same order whether training ran straight through or resumed from a checkpoint.
"""

import math

import numpy as np

from graphc.errors import InputError


def _first(indices, k: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:k])
    return shown + (", ..." if len(indices) > k else "")


def check_arrays(X, y=None, *, num_classes: int | None = None, sample_shape=None, target_shape=None,
                 what: str = "data"):  # fmt: skip
    """Validate (X, y) for training or evaluation and return them as arrays.

    Raises InputError naming the values when X and y differ in length, X (or a float y)
    holds NaN or inf, X's samples do not have `sample_shape`, y's samples do not have
    `target_shape`, or integer labels fall outside 0..num_classes-1.
    """
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise InputError(f"{what}: X must be a numeric array, got dtype {X.dtype}")
    if X.ndim == 0 or len(X) == 0:
        raise InputError(f"{what}: X is empty (shape {X.shape})")
    if sample_shape is not None and tuple(X.shape[1:]) != tuple(sample_shape):
        raise InputError(
            f"{what}: X has samples of shape {tuple(X.shape[1:])} (X is {X.shape}), "
            f"but the model expects samples of shape {tuple(sample_shape)}"
        )
    if X.dtype.kind == "f":
        _check_finite(X, f"{what}: X")
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != len(X):
        raise InputError(
            f"{what}: X and y have different lengths: X has {len(X)} samples, y has {y.size if y.ndim == 0 else len(y)}"
        )
    if target_shape is not None and tuple(y.shape[1:]) != tuple(target_shape):
        raise InputError(
            f"{what}: y has targets of shape {tuple(y.shape[1:])} (y is {y.shape}), "
            f"but the model's output has shape {tuple(target_shape)} per sample"
        )
    if num_classes is not None:
        if y.dtype.kind not in "iu":
            raise InputError(f"{what}: class labels must be integers 0..{num_classes - 1}, got dtype {y.dtype}")
        bad = np.flatnonzero((y < 0) | (y >= num_classes))
        if len(bad):
            values = np.unique(y.reshape(-1)[bad])
            raise InputError(
                f"{what}: labels must be in 0..{num_classes - 1} (the model has {num_classes} classes), "
                f"got {_first(values)} at {len(bad)} sample(s), e.g. index {_first(bad, 3)}"
            )
    elif y.dtype.kind == "f":
        _check_finite(y, f"{what}: y")
    return X, y


def _check_finite(a: np.ndarray, what: str) -> None:
    finite = np.isfinite(a)
    if finite.all():
        return
    bad = ~finite.reshape(len(a), -1).all(axis=1)
    rows = np.flatnonzero(bad)
    kinds = [k for k, present in (("NaN", np.isnan(a).any()), ("inf", np.isinf(a).any())) if present]
    raise InputError(
        f"{what} contains {' and '.join(kinds)} ({int((~finite).sum())} value(s) in {len(rows)} sample(s), "
        f"e.g. index {_first(rows, 3)})"
    )


class Batches:
    """Mini-batches of (X, y) (or of X alone when y is None).

    Iterating yields (xb, yb) for one epoch; each new iteration is the next epoch (or set
    `epoch` first). `batch_size` must be between 1 and the number of samples. With
    `drop_last`, a final batch smaller than `batch_size` is skipped.
    """

    def __init__(self, X, y=None, batch_size: int = 32, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):  # fmt: skip
        X = np.asarray(X)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(X):
                raise InputError(f"X and y have different lengths: X has {len(X)} samples, y has {len(y)}")
        n = len(X)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if batch_size > n:
            raise InputError(f"batch_size {batch_size} is larger than the dataset ({n} samples); use batch_size <= {n}")
        self.X, self.y, self.batch_size = X, y, int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.X)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of `epoch` (seeded, so it is the same on every run)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_samples)

    def epoch_batches(self, epoch: int):
        """Yield the batches of `epoch`."""
        order = self.order(epoch)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self.X[idx]
            yield (xb, None if self.y is None else self.y[idx])

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_batches(epoch)


def split_validation(X, y, fraction: float, seed: int = 0):
    """Hold out a seeded random `fraction` of (X, y): returns (X_train, y_train, X_val, y_val)."""
    X, y = np.asarray(X), np.asarray(y)
    if not isinstance(fraction, float | int) or not 0.0 < float(fraction) < 1.0:
        raise InputError(f"validation_split must be a fraction in (0, 1), got {fraction!r}")
    n = len(X)
    n_val = int(round(n * float(fraction)))
    if not 0 < n_val < n:
        raise InputError(
            f"validation_split={fraction} of {n} samples leaves {n_val} for validation and {n - n_val} for training"
        )
    perm = np.random.default_rng([int(seed), 0x5A11D]).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return X[train], y[train], X[val], y[val]
