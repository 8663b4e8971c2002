"""lstm_scan: the `lstm` workload (one LSTM layer over 50 steps, batch 32, input 32, hidden 128,
last state -> dense 10, softmax cross-entropy, one SGD step) with the cell written once, under
`gc.scan`, instead of unrolled: the numba backend compiles the body once and runs the loop (and
its gradient, a reverse scan) natively. Same weights, data and peers as `lstm` (PyTorch's
nn.LSTM, JAX's lax.scan), so the two graphc figures compare directly.

`graphc(..., seq=T)` builds it for another sequence length (benchmarks/scan_compile.py).
"""

import numpy as np

from . import lstm
from .common import graphc_cross_entropy, graphc_sgd

NAME = "lstm_scan"
DESCRIPTION = "LSTM seq 50, batch 32, input 32, hidden 128 under gc.scan, last state -> dense 10, SGD step"
TRAINING = True
REPEATS = 30
LR = lstm.LR
SEQ, BATCH, IN, HID, OUT = lstm.SEQ, lstm.BATCH, lstm.IN, lstm.HID, lstm.OUT
make, torch, jax = lstm.make, lstm.torch, lstm.jax


def graphc(gc, backend, params, data, seq=None):
    seq = SEQ if seq is None else seq
    with gc.Graph("lstm_scan") as g:
        x = g.input("x", (seq, BATCH, IN))
        y = g.input("y", (BATCH,), dtype="int64")
        W, U, b, wd, bd = (g.param(k, params[k].shape, init=params[k]) for k in ("W", "U", "b", "wd", "bd"))
        zeros = gc.constant(np.zeros((BATCH, HID), np.float32))

        def cell(carry, x_t):
            h, c = carry
            i, f, gg, o = gc.split(x_t @ W + h @ U + b, 4, axis=1)
            c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(gg)
            h = gc.sigmoid(o) * gc.tanh(c)
            return (h, c), None

        (h, _), _ = gc.scan(cell, (zeros, zeros), x)
        loss = g.output("loss", graphc_cross_entropy(gc, h @ wd + bd, y, OUT))
    graphc_sgd(gc, g, loss, LR)
    exe = gc.compile(g, backend=backend, outputs=[loss], apply_updates=True)  # a training step
    xv, yv = data["x"][:seq] if seq <= SEQ else _longer(data["x"], seq), data["y"]
    return lambda: exe(x=xv, y=yv)[0]


def _longer(x, seq):
    """The batch's sequence repeated to `seq` steps (the benchmark of compile time against T)."""
    return np.ascontiguousarray(np.resize(x, (seq, *x.shape[1:])))
