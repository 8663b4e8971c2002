"""mpiexec -n 2 python -m mpi4py collective.py OUT: the allreduce op's values and gradient on
both backends, on two ranks holding different values."""

import json
import sys
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.distributed import world

out = Path(sys.argv[1])
rank = world().rank
results = {}
for backend in ("reference", "numba"):
    g = gc.Graph("c")
    with g:
        x = g.input("x", (3,))
        c = g.input("c", (3,))
        s, m = gc.allreduce(x, "sum"), gc.allreduce(x, "mean")
        loss = gc.sum(s * c)  # each rank's own loss; dL/dx = sum over ranks of c
        gx = gc.grad(loss, x)
    step = gc.compile(g, backend=backend, outputs=[s, m, gx])
    xv = np.array([1.0, 2.0, 3.0], np.float32) * (rank + 1)
    cv = np.array([1.0, 10.0, 100.0], np.float32) * (rank + 1)
    vals = step(x=xv, c=cv)
    results[backend] = [v.tolist() for v in vals] + [xv.tolist()]  # x itself is left as it was
(out / f"rank{rank}.json").write_text(json.dumps(results))
