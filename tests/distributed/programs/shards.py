"""mpiexec -n 3 python -m mpi4py shards.py OUT: the samples each rank's fit() trains on, per step,
for dataset sizes that the global batch divides, leaves a remainder of at least the world size,
and leaves fewer than the world size (joined to the batch before)."""

import json
import sys
from pathlib import Path

import numpy as np

from graphc import nn

out = Path(sys.argv[1])
cases = []
for n, batch in ((48, 4), (50, 4), (37, 4), (13, 2)):
    X = np.arange(n, dtype="float32")[:, None]  # each sample's feature is its index
    y = np.zeros(n, dtype=np.int64)
    model = nn.Model(nn.Sequential([nn.Dense(2)]), input_shape=(1,), backend="reference", distributed=True)
    seen = []

    def record(xb, rng, seen=seen):  # fit calls it with every batch this rank trains on
        seen[-1].append([int(v) for v in xb[:, 0]])
        return xb

    for _epoch in range(2):
        seen.append([])
        model.fit(X, y, epochs=1, batch_size=batch, augment=record, progress=False)
    cases.append({"n": n, "batch": batch, "ranks": model.world.allgather(seen)})
if model.world.is_root:
    (out / "shards.json").write_text(json.dumps(cases))
