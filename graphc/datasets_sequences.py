"""Sequence data that needs no network: the yearly sunspots, digits read row by row, text as characters.

years, counts = load_sunspots()                  # 1700-2008, from graphc/data/sunspots.csv
X, y = forecast_windows(series, window=12)       # X (N, 12, 1): the 12 values before y (N, 1)
X, y = load_digit_sequences()                    # (1797, 8, 8): 8 steps (rows) of 8 features (pixels)
text = read_corpus()                             # the installed Python's standard library source
vocab = CharVocab.from_text(text); ids = vocab.encode(text)
inputs, targets = next_char_windows(ids, 64)     # (N, 64) each: targets are inputs shifted by one

Beside them, the two baselines a forecaster must beat on the same windows: persistence (the
next value is the last) and a linear autoregression fitted by least squares.
"""

import sysconfig
from pathlib import Path

import numpy as np

from graphc.datasets import load_digits
from graphc.errors import InputError

SUNSPOTS_CSV = Path(__file__).parent / "data" / "sunspots.csv"
DEFAULT_CORPUS_CHARS = 1_000_000


def load_sunspots() -> tuple[np.ndarray, np.ndarray]:
    """The yearly mean sunspot numbers 1700-2008 (309 years; source and licence in the CSV's header).

    Returns (years int64, sunspots float32)."""
    if not SUNSPOTS_CSV.is_file():
        raise InputError(
            f"load_sunspots: the bundled data file {SUNSPOTS_CSV} is missing (this installation of graphc lacks its "
            "data files; install it from the repository with `pip install -e .`)"
        )
    lines = [line for line in SUNSPOTS_CSV.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    if lines[0] != "year,sunspots":
        raise InputError(f"load_sunspots: {SUNSPOTS_CSV} should start with 'year,sunspots', got {lines[0]!r}")
    rows = np.array([line.split(",") for line in lines[1:]], dtype=np.float64)
    return rows[:, 0].astype(np.int64), rows[:, 1].astype(np.float32)


def forecast_windows(series, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every `window` consecutive values of a 1-D series with the value after them.

    Returns (X float32 (N, window, 1), y float32 (N, 1)) with N = len(series) - window: X[i] holds
    series[i : i + window] as `window` steps of one feature, y[i] is series[i + window]."""
    s = np.asarray(series, dtype=np.float32)
    if s.ndim != 1:
        raise InputError(f"forecast_windows: the series must be 1-D, got shape {s.shape}")
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or not 1 <= window < len(s):
        raise InputError(f"forecast_windows: window must be an int in 1..{len(s) - 1}, got {window!r}")
    n = len(s) - window
    idx = np.arange(window)[None, :] + np.arange(n)[:, None]
    return np.ascontiguousarray(s[idx][:, :, None]), np.ascontiguousarray(s[window:][:, None])


def persistence_forecast(X) -> np.ndarray:
    """The persistence baseline: each window's next value is its last, shaped (N, 1)."""
    X = np.asarray(X)
    return X[:, -1, :1].astype(np.float32)


class LinearAR:
    """A linear autoregression on the same windows: next = w . window + b, fitted by least squares."""

    def __init__(self):
        self.coef = None

    def fit(self, X, y) -> "LinearAR":
        A = self._design(X)
        self.coef, *_ = np.linalg.lstsq(A, np.asarray(y, np.float64).reshape(len(A), -1), rcond=None)
        return self

    def predict(self, X) -> np.ndarray:
        if self.coef is None:
            raise InputError("LinearAR.predict: call fit first")
        return (self._design(X) @ self.coef).astype(np.float32)

    @staticmethod
    def _design(X):
        X = np.asarray(X, np.float64)
        flat = X.reshape(len(X), -1)
        return np.column_stack([flat, np.ones(len(flat))])


def rmse(pred, target) -> float:
    """Root-mean-square error of two arrays of one shape."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    if pred.shape != target.shape:
        raise InputError(f"rmse: predictions {pred.shape} and targets {target.shape} differ in shape")
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def load_digit_sequences() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 8x8 digits read row by row: X float32 (1797, 8, 8), 8 time steps (the rows,
    top to bottom) of 8 features (the pixels of a row, in [0, 1]); y int64 labels 0..9."""
    X, y = load_digits()
    return np.ascontiguousarray(X.reshape(len(X), 8, 8)), y


# -- text -----------------------------------------------------------------------------------------
def stdlib_files() -> list[Path]:
    """The installed Python's top-level standard-library modules (sysconfig's stdlib path), in
    name order, leaving out the private ones (a leading underscore) and `this.py` (rot13 text)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if not p.name.startswith("_") and p.name != "this.py")


def read_corpus(path=None, max_chars: int = DEFAULT_CORPUS_CHARS) -> str:
    """A text corpus for character models, at most `max_chars` characters.

    path: a text file to read (UTF-8); default the source and docstrings of the Python standard
    library, read now from the installed Python: whole files from `stdlib_files()` in name order
    until the cap. Tabs become four spaces, Windows line ends plain ones, and characters outside
    printable ASCII are dropped, so the vocabulary stays under 100 characters."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise InputError(f"read_corpus: max_chars must be a positive int, got {max_chars!r}")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"read_corpus: no such file {str(p)!r}")
        try:
            text = p.read_text(encoding="utf-8", errors="replace")[:max_chars]
        except OSError as exc:
            raise InputError(f"read_corpus: cannot read {str(p)!r}: {exc}") from None
        if not text:
            raise InputError(f"read_corpus: {str(p)!r} is empty")
        return text
    parts, size = [], 0
    for f in stdlib_files():
        try:
            part = _ascii(f.read_text(encoding="utf-8", errors="ignore"))
        except OSError:
            continue  # an unreadable module: the next one serves as well
        parts.append(part)
        size += len(part)
        if size >= max_chars:
            break
    text = "".join(parts)[:max_chars]
    if not text:
        raise InputError(f"read_corpus: found no standard-library source under {sysconfig.get_paths()['stdlib']!r}")
    return text


def _ascii(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    return "".join(c for c in text if c == "\n" or " " <= c <= "~")


class CharVocab:
    """Characters <-> integer ids (sorted characters, ids 0..len-1)."""

    def __init__(self, chars):
        self.chars = "".join(sorted(set(chars)))
        if not self.chars:
            raise InputError("CharVocab: no characters")
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(text)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of `text`; InputError names the first characters it does not know."""
        unknown = sorted(set(text) - set(self.index))
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise InputError(f"CharVocab.encode: {len(unknown)} character(s) not in the vocabulary: {shown}")
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        ids = np.asarray(ids).reshape(-1)
        bad = (ids < 0) | (ids >= len(self.chars))
        if bad.any():
            raise InputError(f"CharVocab.decode: id {int(ids[bad][0])} outside 0..{len(self.chars) - 1}")
        return "".join(self.chars[int(i)] for i in ids)


def next_char_windows(ids, length: int, step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Windows of `length` ids and the same windows shifted by one (the characters to predict).

    Windows start every `step` ids (default `length`: no overlap). Returns (inputs, targets),
    int64 (N, length) each, targets[:, t] == the id after inputs[:, t]."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    step = length if step is None else step
    for name, v in (("length", length), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise InputError(f"next_char_windows: {name} must be a positive int, got {v!r}")
    if len(ids) < length + 1:
        raise InputError(f"next_char_windows: {len(ids)} ids are too few for one window of {length} and its target")
    starts = np.arange(0, len(ids) - length, step)
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.ascontiguousarray(ids[idx]), np.ascontiguousarray(ids[idx + 1])


def unigram_bits_per_char(train_ids, eval_ids, vocab_size: int) -> float:
    """Bits per character of the unigram baseline: each character's training frequency (add-one
    smoothed over the vocabulary), scored on `eval_ids`."""
    counts = np.bincount(np.asarray(train_ids).reshape(-1), minlength=vocab_size).astype(np.float64) + 1.0
    p = counts / counts.sum()
    return float(-np.mean(np.log2(p[np.asarray(eval_ids).reshape(-1)])))
