"""Arrays in, mini-batches out; and the checks that catch bad training data before it runs.

    for xb, yb in Batches(X, y, batch_size=32, shuffle=True, seed=0):
        step(x=xb, y=yb)

Shuffling is seeded per epoch (`numpy.random.default_rng([seed, epoch])`), so epoch k
sees the same order whether training ran straight through or resumed from a checkpoint.
"""

import numpy as np

from graphc.errors import InputError


def _first(indices, k: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:k])
    return shown + (", ..." if len(indices) > k else "")


def _shape(shape) -> str:
    """A sample shape as the user writes X's shape: (N, 1, 8, 8)."""
    return "(" + ", ".join(["N", *(str(d) for d in shape)]) + ")"


def _array(a, name: str, what: str, n: int | None = None) -> np.ndarray:
    """`a` as a numeric ndarray with a sample axis (of length `n` when given); InputError for
    ragged, non-numeric, scalar or empty data."""
    try:
        a = np.asarray(a)
    except ValueError as exc:  # NumPy's "inhomogeneous shape": a ragged list
        raise InputError(f"{what}: {name} is ragged (its rows differ in length): {exc}") from None
    if n is not None and (a.ndim == 0 or len(a) != n):
        raise InputError(
            f"{what}: X and y have different lengths: X has {n} samples, y has {a.size if a.ndim == 0 else len(a)}"
        )
    if a.dtype.kind not in "fiub":
        raise InputError(f"{what}: {name} must be a numeric array (floats, integers or bools), got dtype {a.dtype}")
    if a.ndim == 0:
        raise InputError(
            f"{what}: {name} must be an array of samples (first axis: samples), got the scalar {a.item()!r}"
        )
    if len(a) == 0:
        raise InputError(f"{what}: {name} has 0 samples (shape {a.shape}); at least one sample is needed")
    return a


def convert(a: np.ndarray, dtype, name: str, what: str) -> np.ndarray:
    """`a` converted to `dtype` by the documented policy, as a C-contiguous array.

    A float dtype takes floats, integers and bools (float64 is rounded to float32); NaN, inf
    and values beyond the dtype's range are refused. An integer dtype takes integers and bools
    whose values fit it, and refuses floats. InputError names the value, its index and the dtype.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if a.dtype.kind == "f":
            _check_finite(a, f"{what}: {name}")
        with np.errstate(over="ignore"):  # overflow is reported below, naming the value
            out = np.ascontiguousarray(a, dtype=dtype)
        if a.dtype.kind == "f" and a.dtype.itemsize > dtype.itemsize and not np.isfinite(out).all():
            pos = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
            raise InputError(
                f"{what}: {name} value {a[pos].item()!r} at index {pos} does not fit {dtype} "
                f"(largest magnitude {float(np.finfo(dtype).max):.4g})"
            )
        return out
    if dtype.kind in "iu":
        if a.dtype.kind == "f":
            raise InputError(f"{what}: {name} must hold integers for the model's {dtype} input, got dtype {a.dtype}")
        if a.dtype.kind in "iu":
            info = np.iinfo(dtype)
            bad = (a < info.min) | (a > info.max)
            if bad.any():
                pos = tuple(int(i) for i in np.argwhere(bad)[0])
                raise InputError(
                    f"{what}: {name} value {int(a[pos])} at index {pos} does not fit {dtype} "
                    f"(range {info.min}..{info.max})"
                )
        return np.ascontiguousarray(a, dtype=dtype)
    if a.dtype.kind != "b":
        raise InputError(f"{what}: {name} must hold bools for the model's bool input, got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def check_samples(X, sample_shape=None, dtype=None, what: str = "data") -> np.ndarray:
    """X as an array of samples of `sample_shape`, converted to `dtype` (see `convert`)."""
    X = _array(X, "X", what)
    if sample_shape is not None and not _fits(X.shape[1:], sample_shape):
        sample_shape = tuple(sample_shape)
        if X.shape == sample_shape:
            raise InputError(
                f"{what}: X has shape {X.shape}: one sample without the sample axis; the model expects X of "
                f"shape {_shape(sample_shape)} (N samples of shape {sample_shape}): for one sample pass X[None]"
            )
        raise InputError(
            f"{what}: X has samples of shape {tuple(X.shape[1:])} (X is {X.shape}), but the model expects "
            f"samples of shape {sample_shape}: X of shape {_shape(sample_shape)}"
        )
    if dtype is None:
        if X.dtype.kind == "f":
            _check_finite(X, f"{what}: X")
        return X
    return convert(X, dtype, "X", what)


def _fits(shape, sample_shape) -> bool:
    """Whether a sample's shape is `sample_shape`, where None (a sequence's time axis) fits any length."""
    shape, sample_shape = tuple(shape), tuple(sample_shape)
    return len(shape) == len(sample_shape) and all(w is None or d == w for d, w in zip(shape, sample_shape))


def _whole(y: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    """Class labels as int64; float labels must be whole numbers (1.0 is class 1)."""
    expected = f"class labels must be integers 0..{num_classes - 1}"
    if y.dtype.kind == "f":
        _check_finite(y, f"{what}: y")
        frac = np.flatnonzero(y.reshape(-1) != np.round(y.reshape(-1)))
        if len(frac):
            raise InputError(
                f"{what}: {expected} (whole-number floats such as 1.0 are accepted), got "
                f"{y.reshape(-1)[frac[0]].item()!r} at {len(frac)} sample(s), e.g. index {_first(frac, 3)}"
            )
    bad = np.flatnonzero((y < 0) | (y >= num_classes))
    if len(bad):
        values = np.unique(y.reshape(-1)[bad])
        shown = ", ".join(str(int(v)) if float(v).is_integer() else repr(v.item()) for v in values[:5])
        raise InputError(
            f"{what}: labels must be in 0..{num_classes - 1} (the model has {num_classes} classes), "
            f"got {shown + (', ...' if len(values) > 5 else '')} at {len(bad)} sample(s), e.g. index {_first(bad, 3)}"
        )
    return y.astype(np.int64)


def _one_hot_rows(y: np.ndarray) -> np.ndarray:
    """Indices of the rows of `y` that are not one-hot (exactly one 1, the rest 0)."""
    return np.flatnonzero(~(((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1)))


def check_labels(y, n: int, num_classes: int, what: str = "data", probabilities: bool = False) -> np.ndarray:
    """Targets for a cross-entropy over `num_classes` classes, for `n` samples.

    Accepted: class labels of shape (n,) or (n, 1) (integers or bools, or floats holding whole
    numbers), and rows of shape (n, num_classes): one-hot rows, or (when `probabilities`)
    probability rows. Returns int64 labels (n,), or float64 rows (n, num_classes) when
    `probabilities` (labels are then one-hot encoded).
    """
    y = _array(y, "y", what, n)
    expected = f"class labels of shape (N,) or (N, 1), or one-hot rows of shape (N, {num_classes})"
    if probabilities:
        expected = f"class labels of shape (N,) or (N, 1), or probability rows of shape (N, {num_classes})"
    if y.ndim == 2 and y.shape[1] == 1 and num_classes != 1:
        y = y[:, 0]
    if y.ndim == 1:
        labels = _whole(y, num_classes, what)
        return np.eye(num_classes)[labels] if probabilities else labels
    if y.ndim != 2 or y.shape[1] != num_classes:
        raise InputError(f"{what}: y has shape {y.shape}; the model ({num_classes} classes) expects {expected}")
    if y.dtype.kind == "f":
        _check_finite(y, f"{what}: y")
    if probabilities:
        neg = np.flatnonzero((y < 0).any(axis=1))
        if len(neg):
            raise InputError(
                f"{what}: probability targets must be >= 0, got {y[neg[0]].min().item()!r} in "
                f"{len(neg)} row(s), e.g. index {_first(neg, 3)}"
            )
        return y.astype(np.float64)
    rows = _one_hot_rows(y)
    if len(rows):
        raise InputError(
            f"{what}: y has rows of shape ({num_classes},) that are not one-hot ({len(rows)} row(s), e.g. index "
            f"{_first(rows, 3)}); a model built for class labels takes {expected}. For probability targets "
            "build the model with nn.Model(..., targets='probabilities')"
        )
    return y.argmax(axis=1).astype(np.int64)


def check_targets(y, n: int, target_shape, dtype, what: str = "data") -> np.ndarray:
    """Float targets (mse, binary cross-entropy) of `target_shape` per sample, converted to `dtype`;
    flat targets (n,) are accepted for one output unit."""
    y = _array(y, "y", what, n)
    target_shape = tuple(target_shape)
    if target_shape == (1,) and y.ndim == 1:
        y = y[:, None]
    if tuple(y.shape[1:]) != target_shape:
        raise InputError(
            f"{what}: y has targets of shape {tuple(y.shape[1:])} (y is {y.shape}), but the model's output has "
            f"shape {target_shape} per sample: y of shape {_shape(target_shape)}"
        )
    return convert(y, dtype, "y", what)


def check_arrays(
    X, y=None, *, num_classes: int | None = None, sample_shape=None, target_shape=None, what: str = "data"
):
    """Validate (X, y) for training or evaluation and return them as arrays.

    Raises InputError naming the values when X is empty, X and y differ in length, X (or a
    float y) holds NaN or inf, X's samples do not have `sample_shape`, y's samples do not have
    `target_shape`, or labels fall outside 0..num_classes-1 (see check_labels).
    """
    X = check_samples(X, sample_shape, what=what)
    if y is None:
        return X, None
    y = _array(y, "y", what, len(X))
    if num_classes is not None:
        return X, check_labels(y, len(X), num_classes, what)
    if target_shape is not None and tuple(y.shape[1:]) != tuple(target_shape):
        raise InputError(
            f"{what}: y has targets of shape {tuple(y.shape[1:])} (y is {y.shape}), "
            f"but the model's output has shape {tuple(target_shape)} per sample"
        )
    if y.dtype.kind == "f":
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
        f"e.g. index {_first(rows, 3)}); the model needs finite values"
    )


class Batches:
    """Mini-batches of (X, y) (or of X alone when y is None).

    Iterating yields (xb, yb) for one epoch; each new iteration is the next epoch (or set
    `epoch` first). `batch_size` must be between 1 and the number of samples. With
    `drop_last`, a final batch smaller than `batch_size` is skipped.

    extra: named per-sample arrays (a sequence model's lengths) batched alike; `epoch_feeds`
    yields (xb, yb, {name: batch of each}).

    shard=(rank, size), for data-parallel training: `batch_size` is per rank. Every rank
    shuffles alike (same seed), cuts the epoch's order into global batches of
    `size * batch_size` samples and yields its own contiguous part of each, so the ranks' shards
    are disjoint and together cover the epoch. A last global batch that the ranks cannot share
    equally is split as evenly as possible (parts differ by at most one sample); one smaller
    than `size` is joined to the batch before it, so that no rank is ever left without samples.
    """

    def __init__(
        self,
        X,
        y=None,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
        extra: dict | None = None,
    ):
        X = np.asarray(X)
        self.extra = {k: np.asarray(v) for k, v in (extra or {}).items()}
        for k, v in self.extra.items():
            if len(v) != len(X):
                raise InputError(f"X and {k} have different lengths: X has {len(X)} samples, {k} has {len(v)}")
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(X):
                raise InputError(f"X and y have different lengths: X has {len(X)} samples, y has {len(y)}")
        n = len(X)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        rank, size = _check_shard(shard)
        if size == 1 and batch_size > n:
            raise InputError(f"batch_size {batch_size} is larger than the dataset ({n} samples); use batch_size <= {n}")
        if size > 1 and batch_size * size > n:
            raise InputError(
                f"the global batch (batch_size {batch_size} per rank x {size} ranks = {batch_size * size} samples) "
                f"is larger than the dataset ({n} samples); use batch_size <= {n // size}"
            )
        self.rank, self.size = rank, size
        self.X, self.y, self.batch_size = X, y, int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0

    @property
    def num_samples(self) -> int:
        return len(self.X)

    def __len__(self) -> int:
        return len(self._bounds())

    def _bounds(self) -> list[tuple[int, int]]:
        """(start, stop) of each global batch in the epoch's order."""
        n, b = self.num_samples, self.batch_size * self.size
        full = n // b
        out = [(i * b, (i + 1) * b) for i in range(full)]
        if n % b and not self.drop_last:
            if n % b < self.size and out:  # too few to give every rank a sample: join the batch before
                out[-1] = (out[-1][0], n)
            else:
                out.append((full * b, n))
        return out

    def shard_indices(self, epoch: int) -> list[np.ndarray]:
        """This rank's sample indices for each step of `epoch` (its part of each global batch)."""
        order = self.order(epoch)
        out = []
        for start, stop in self._bounds():
            m = stop - start
            lo = start + self.rank * (m // self.size) + min(self.rank, m % self.size)
            out.append(order[lo : lo + m // self.size + (self.rank < m % self.size)])
        return out

    def order(self, epoch: int) -> np.ndarray:
        """The sample order of `epoch` (seeded, so it is the same on every run)."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_samples)

    def epoch_batches(self, epoch: int):
        """Yield the batches (xb, yb) of `epoch`."""
        for xb, yb, _ in self.epoch_feeds(epoch):
            yield (xb, yb)

    def epoch_feeds(self, epoch: int):
        """Yield the batches of `epoch` with their extra arrays: (xb, yb, {name: batch})."""
        for idx in self.shard_indices(epoch):
            xb = self.X[idx]
            yield (xb, None if self.y is None else self.y[idx], {k: v[idx] for k, v in self.extra.items()})

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_batches(epoch)


def _check_shard(shard) -> tuple[int, int]:
    ok = isinstance(shard, tuple | list) and len(shard) == 2
    ok = ok and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in shard)
    if not ok or not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise InputError(f"shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
    return int(shard[0]), int(shard[1])


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


def check_int(op: str, name: str, value, minimum: int | None = None) -> None:
    """InputError naming `op`, the argument and its value unless `value` is an int (>= minimum)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        want = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise InputError(f"{op}: {name} must be {want}, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise InputError(f"{op}: {name} must be an integer >= {minimum}, got {value!r}")
