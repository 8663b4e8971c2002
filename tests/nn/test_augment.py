"""Data augmentation: random_shift's pixel values, and Model.fit(augment=...) seeding, scope and resume."""

import numpy as np
import pytest

from graphc import nn
from graphc.datasets import load_digits
from graphc.errors import InputError
from graphc.nn.augment import random_shift

B = "reference"


class Offsets:
    """A stand-in Generator that hands random_shift chosen offsets (rows: dy, dx)."""

    def __init__(self, dy, dx, keep=None):
        self.d = np.array([dy, dx], dtype=np.float64)
        self.keep = keep

    def integers(self, lo, hi, size):
        return self.d.astype(np.int64)

    def uniform(self, lo, hi, size):
        return self.d.copy()

    def random(self, n):
        return np.asarray(self.keep, dtype=np.float64)


def shifted(img, dy, dx):
    """img (H, W) moved down dy and right dx whole pixels, zeros coming in."""
    h, w = img.shape
    out = np.zeros_like(img)
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = img[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).random((4, 2, 6, 7)).astype(np.float32)


def test_whole_pixel_shifts_move_every_channel_together(images):
    dy, dx = [1, -1, 0, 2], [0, 1, -2, -1]
    out = random_shift(2, whole_pixels=True)(images, Offsets(dy, dx))
    assert out.shape == images.shape and out.dtype == np.float32
    for b in range(4):
        for c in range(2):
            np.testing.assert_array_equal(out[b, c], shifted(images[b, c], dy[b], dx[b]))


def test_fractional_shifts_interpolate_linearly(images):
    x = images[:, :1]
    quarter = random_shift(1.0)(x, Offsets([0.25, -0.75, 0, 0], [0, 0, 0.5, -0.5]))
    for b, (d, axis) in enumerate([(0.25, 0), (-0.75, 0), (0.5, 1), (-0.5, 1)]):
        s = int(np.sign(d))
        one = shifted(x[b, 0], s, 0) if axis == 0 else shifted(x[b, 0], 0, s)
        np.testing.assert_allclose(quarter[b, 0], (1 - abs(d)) * x[b, 0] + abs(d) * one, rtol=1e-6, atol=1e-7)
    # An image away from the border keeps its total ink under any shift of up to one pixel.
    blob = np.zeros((1, 1, 8, 8), np.float32)
    blob[0, 0, 3:5, 2:6] = [[0.2, 0.9, 0.4, 0.1], [0.5, 0.3, 0.8, 0.6]]
    moved = random_shift(1.0)(blob, Offsets([0.3], [-0.6]))
    assert moved.sum() == pytest.approx(blob.sum(), rel=1e-6)
    assert not np.array_equal(moved, blob)


def test_seeded_shifts_repeat_and_stay_in_range():
    X, _ = load_digits()
    xb = X[:64]
    a = random_shift(0.5)(xb, np.random.default_rng(7))
    np.testing.assert_array_equal(a, random_shift(0.5)(xb, np.random.default_rng(7)))
    assert not np.array_equal(a, random_shift(0.5)(xb, np.random.default_rng(8)))
    assert a.min() >= 0.0 and a.max() <= 1.0 and np.abs(a - xb).max() > 0.1
    np.testing.assert_array_equal(random_shift(0.5, p=0.0)(xb, np.random.default_rng(7)), xb)
    np.testing.assert_array_equal(random_shift(0)(xb, np.random.default_rng(7)), xb)
    # p=0.5: some images untouched, the others moved.
    half = random_shift(1, whole_pixels=True, p=0.5)(xb, np.random.default_rng(3))
    same = np.array([np.array_equal(u, v) for u, v in zip(half, xb)])
    assert 10 < same.sum() < 54


def test_random_shift_bad_arguments():
    with pytest.raises(InputError, match="max_shift must be a non-negative number"):
        random_shift(-1)
    with pytest.raises(InputError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        random_shift(1, p=1.5)
    with pytest.raises(InputError, match=r"needs a batch of images .* got shape \(4, 64\)"):
        random_shift(1)(np.zeros((4, 64), np.float32), np.random.default_rng(0))


# -- Model.fit(augment=...) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(flat=True)
    return X[:200], y[:200], X[200:320], y[200:320]


def make(seed=0, lr=3e-3):
    net = nn.Sequential([nn.Dense(16, activation="relu"), nn.Dense(10)], name="mlp")
    return nn.Model(net, input_shape=(64,), optimizer=nn.optim.Adam(lr=lr), backend=B, seed=seed)


def values(model):
    return {k: v.copy() for k, v in model.graph.values.items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_augment_sees_every_training_batch_with_a_seeded_rng(digits):
    X, y, _, _ = digits
    calls = []

    def record(xb, rng):
        calls.append((len(xb), rng.integers(1 << 30)))
        return xb

    m = make()
    m.fit(X, y, epochs=2, batch_size=48, validation_split=0.2, seed=5, augment=record, progress=False)
    # 160 training samples (the 40 validation ones are never augmented) in batches of 48.
    assert [n for n, _ in calls] == [48, 48, 48, 16] * 2
    expected = [np.random.default_rng((5, e, i)).integers(1 << 30) for e in range(2) for i in range(4)]
    assert [r for _, r in calls] == expected
    # The identity augmentation trains exactly like no augmentation.
    plain = make()
    plain.fit(X, y, epochs=2, batch_size=48, validation_split=0.2, seed=5, progress=False)
    assert_same(values(m), values(plain))


def test_augmented_batches_are_what_the_model_trains_on(digits):
    X, y, Xv, yv = digits
    blank = make(lr=1e-2)
    blank.fit(X, y, epochs=8, batch_size=20, augment=lambda xb, rng: np.zeros_like(xb), progress=False)
    learned = make(lr=1e-2)
    learned.fit(X, y, epochs=8, batch_size=20, progress=False)
    assert learned.evaluate(Xv, yv)["accuracy"] > 0.8
    assert blank.evaluate(Xv, yv)["accuracy"] < 0.3  # saw only blank images: no better than a guess


def test_augmented_training_repeats_and_resumes_exactly(digits, tmp_path):
    X, y, Xv, yv = digits

    def noise(xb, rng):
        return xb + rng.normal(0, 0.05, xb.shape).astype(xb.dtype)

    straight = make()
    straight.fit(X, y, epochs=3, batch_size=40, validation_data=(Xv, yv), augment=noise, progress=False)
    again = make()
    again.fit(X, y, epochs=3, batch_size=40, validation_data=(Xv, yv), augment=noise, progress=False)
    assert_same(values(straight), values(again))

    first = make()
    first.fit(X, y, epochs=2, batch_size=40, validation_data=(Xv, yv), augment=noise, progress=False)
    first.save(tmp_path / "ck")
    resumed = nn.Model.load(tmp_path / "ck")
    resumed.fit(X, y, epochs=1, batch_size=40, validation_data=(Xv, yv), augment=noise, progress=False)
    assert_same(values(straight), values(resumed))
    assert resumed.history.history == straight.history.history
    # The noise mattered: without it the parameters come out different.
    plain = make()
    plain.fit(X, y, epochs=3, batch_size=40, validation_data=(Xv, yv), progress=False)
    assert not np.array_equal(plain.graph.values[next(iter(plain._weight_names))],
                              straight.graph.values[next(iter(straight._weight_names))])  # fmt: skip


def test_bad_augment_errors(digits):
    X, y, _, _ = digits
    m = make()
    with pytest.raises(InputError, match="augment must be a callable"):
        m.fit(X, y, epochs=1, augment="shift", progress=False)
    with pytest.raises(InputError, match=r"augment returned shape \(16, 64\) for a batch of shape \(32, 64\)"):
        m.fit(X, y, epochs=1, batch_size=32, augment=lambda xb, rng: xb[:16], progress=False)
    with pytest.raises(InputError, match="augment returned NaN or inf"):
        m.fit(X, y, epochs=1, augment=lambda xb, rng: xb * np.nan, progress=False)
