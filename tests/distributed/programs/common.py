"""What the MPI programs and the single-process tests that check them build alike."""

import numpy as np

from graphc import nn

N, FEATURES, CLASSES = 61, 6, 3  # 61 samples: the last global batch of 16 splits 7 / 6 on 2 ranks
BATCH = 8  # per rank; a global batch of 16 on 2 ranks


def data(n: int = N):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, FEATURES)).astype("float32"), rng.integers(0, CLASSES, n)


def optimizer(name: str, clip: bool = True):
    if name == "sgd":  # clip_norm small enough to clip every step: on the global (reduced) norm
        return nn.optim.SGD(0.1, momentum=0.9, clip_norm=0.05 if clip else None)
    return nn.optim.Adam(1e-2)


def model(opt: str, distributed: bool, backend: str = "numba", seed: int = 3, width: int = 16, clip: bool = True):
    net = nn.Sequential([nn.Dense(width, activation="tanh"), nn.Dense(CLASSES)])
    return nn.Model(net, input_shape=(FEATURES,), optimizer=optimizer(opt, clip), backend=backend, seed=seed,
                    distributed=distributed)  # fmt: skip


def save_values(path, values: dict) -> None:
    np.savez(path, **{k.replace("/", "|"): v for k, v in values.items()})


def load_values(path) -> dict:
    with np.load(path) as f:
        return {k.replace("|", "/"): f[k] for k in f.files}
