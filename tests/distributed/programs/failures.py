"""mpiexec -n 2 python -m mpi4py failures.py CASE OUT: one rank goes wrong; what every rank sees.

Caught errors are written to OUT/rank<r>.txt (so the test reads every rank's message); the cases
"raise" and "kill" are not caught: the launch itself must end, with an error, on every rank.
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import common  # noqa: E402
import numpy as np  # noqa: E402

import graphc  # noqa: E402
from graphc import nn  # noqa: E402
from graphc.distributed import world  # noqa: E402

case, out = sys.argv[1], Path(sys.argv[2])
rank = world().rank
X, y = common.data()
try:
    if case == "version" and rank == 1:
        graphc.__version__ = "0.0.9"
    if case == "nan":
        X[9] = 1e30  # with shuffle=False sample 9 is in rank 1's half of the first global batch
        Xm, ym = X, X[:, :3] * 0.0
        model = nn.Model(nn.Sequential([nn.Dense(3)]), input_shape=(6,), loss="mse", backend="numba",
                         distributed=True)  # fmt: skip
        model.fit(Xm, ym, epochs=2, batch_size=common.BATCH, shuffle=False, progress=False)
    elif case == "write":
        model = common.model("adam", distributed=True)
        model.fit(X, y, epochs=1, batch_size=common.BATCH, progress=False)
        (out / "file").write_text("a file where the checkpoint's folder should be")
        model.save(out / "file" / "ckpt")
    else:
        seed = 4 if case == "seed" and rank == 1 else 3
        width = 17 if case == "model" and rank == 1 else 16
        model = common.model("adam", distributed=True, seed=seed, width=width)
        if case == "data" and rank == 1:
            X = X + 1.0  # e.g. a data split drawn without a seed: the shards would not cover the data

        def fail(xb, rng):
            if case == "raise" and rank == 1:
                raise RuntimeError("rank 1 fails on purpose")
            if case == "kill" and rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return xb

        model.fit(X, y, epochs=2, batch_size=common.BATCH, augment=fail, progress=False)
        np.save(out / f"done{rank}.npy", np.zeros(1))
except graphc.GraphcError as exc:
    (out / f"rank{rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
