"""mpiexec -n 2 python -m mpi4py features.py OUT: dropout, batch norm and early stopping on two
ranks; every rank reports what it ended with (one file per rank, for the test)."""

import json
import sys
from pathlib import Path

import numpy as np

from graphc import nn
from graphc.distributed.checks import values_digest

out = Path(sys.argv[1])
rng = np.random.default_rng(1)
X = rng.normal(size=(96, 6)).astype("float32")
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
Xv, yv = X[:30] + 0.5, y[:30]
net = nn.Sequential([nn.Dense(32), nn.BatchNorm1D(), nn.Activation("relu"), nn.Dropout(0.5), nn.Dense(2)])
model = nn.Model(net, input_shape=(6,), optimizer=nn.optim.Adam(0.05), backend="numba", seed=5, distributed=True)
world = model.world
model.fit(X, y, epochs=30, batch_size=8, validation_data=(Xv, yv), early_stopping=2, progress=True)
step_graph = model.train_step.graph
masks = sorted({tuple(n.attrs["seed"]) for n in step_graph.nodes if n.op == "dropout_mask"})
report = {
    "rank": world.rank,
    "values": values_digest(model.graph.values),
    "running_mean": model.graph.values["sequential/batch_norm/running_mean"].tolist(),
    "history": model.history.to_dict(),
    "epochs": model.epoch,
    "stop_reason": model.history.stop_reason,
    "mask_seeds": [list(s) for s in masks],
    "allreduces": sum(n.op == "allreduce" for n in step_graph.nodes),
}
(out / f"rank{world.rank}.json").write_text(json.dumps(report))
