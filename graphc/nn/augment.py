"""Seeded data augmentation for `Model.fit(..., augment=...)`.

    model.fit(X, y, epochs=20, augment=random_shift(0.5))   # each image moved by up to half a pixel

An augmentation is a callable (batch_X, rng) -> batch_X of the same shape; `fit` calls it on
every training batch with a numpy Generator seeded by (seed, epoch, batch), so augmented
training repeats exactly and resumes from checkpoints like plain training.
"""

import math

import numpy as np

from graphc.errors import InputError


class random_shift:  # noqa: N801 (used like a function: augment=random_shift(0.5))
    """Move each image by a random offset in [-max_shift, max_shift] pixels along each of the
    last two axes independently (bilinear interpolation for fractions of a pixel), filling
    what comes in from outside the image with `fill`.

    Batches are shaped (batch, ..., H, W); every channel of an image moves together.
    `whole_pixels`: draw integer offsets only (no interpolation). `p`: the probability that
    an image is moved at all. On 8x8 digits a whole pixel is an eighth of the image, so
    sub-pixel shifts (max_shift=0.5) help where +-1 pixel shifts hurt.
    """

    def __init__(self, max_shift: float = 0.5, whole_pixels: bool = False, p: float = 1.0, fill: float = 0.0):
        if isinstance(max_shift, bool) or not isinstance(max_shift, int | float) or not 0 <= max_shift < 1e6:
            raise InputError(f"random_shift: max_shift must be a non-negative number of pixels, got {max_shift!r}")
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            raise InputError(f"random_shift: p must be a probability in [0, 1], got {p!r}")
        self.max_shift, self.whole_pixels, self.p, self.fill = float(max_shift), bool(whole_pixels), float(p), fill

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 3:
            raise InputError(f"random_shift: needs a batch of images (batch, ..., H, W), got shape {X.shape}")
        n, s = len(X), self.max_shift
        if self.whole_pixels:
            k = math.floor(s)
            dy, dx = rng.integers(-k, k + 1, size=(2, n)).astype(np.float64)
        else:
            dy, dx = rng.uniform(-s, s, size=(2, n))
        if self.p < 1.0:
            still = rng.random(n) >= self.p
            dy[still] = dx[still] = 0.0
        imgs = X.reshape(n, -1, *X.shape[-2:])  # channels (any middle axes) move together
        out = _shift_axis(_shift_axis(imgs, dy, 2, self.fill), dx, 3, self.fill)
        return out.reshape(X.shape).astype(X.dtype, copy=False)

    def __repr__(self):
        opts = f"max_shift={self.max_shift}, whole_pixels={self.whole_pixels}, p={self.p}, fill={self.fill}"
        return f"random_shift({opts})"


def _shift_axis(imgs: np.ndarray, d: np.ndarray, axis: int, fill) -> np.ndarray:
    """Move image b by d[b] pixels along `axis` (2: down, 3: right) of (batch, channels, H, W):
    output pixel i reads the source at i - d[b], interpolated linearly between neighbours."""
    size = imgs.shape[axis]
    pad = int(math.ceil(np.abs(d).max(initial=0.0))) + 1
    widths = [(0, 0)] * 4
    widths[axis] = (pad, pad)
    padded = np.pad(imgs, widths, constant_values=fill)
    src = np.arange(size)[None, :] - d[:, None] + pad  # (batch, size), within the padded axis
    lo = np.floor(src)
    frac = (src - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    view = [1, 1, 1, 1]
    view[0], view[axis] = len(d), size
    lo, frac = lo.reshape(view), frac.reshape(view)
    a = np.take_along_axis(padded, np.broadcast_to(lo, _with(padded.shape, axis, size)), axis)
    c = np.take_along_axis(padded, np.broadcast_to(lo + 1, _with(padded.shape, axis, size)), axis)
    return a * (1 - frac) + c * frac


def _with(shape, axis, size):
    shape = list(shape)
    shape[axis] = size
    return tuple(shape)
