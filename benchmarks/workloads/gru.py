"""gru: one GRU layer over 50 steps (batch 32, input 32, hidden 128), last state -> dense 10,
softmax cross-entropy, one SGD training step: the `lstm` workload's shape with a GRU cell.

Gates in PyTorch's order (reset, update, new): W (in, 3H), U (H, 3H) and both biases b_ih,
b_hh (3H), the reset gate applied after the recurrent product (n = tanh(x W_n + b_in +
r * (h U_n + b_hn)), PyTorch's form). graphc runs `nn.GRU` and `nn.Dense`; PyTorch runs nn.GRU
(its native CPU kernel); JAX runs the same cell under lax.scan.
"""

import numpy as np

from . import lstm
from .common import graphc_cross_entropy, graphc_sgd, jax_cross_entropy, jax_train_step, torch_train_step, uniform

NAME = "gru"
DESCRIPTION = "GRU seq 50, batch 32, input 32, hidden 128, last state -> dense 10, SGD step"
TRAINING = True
REPEATS = 30
LR = lstm.LR
SEQ, BATCH, IN, HID, OUT = lstm.SEQ, lstm.BATCH, lstm.IN, lstm.HID, lstm.OUT


def make(rng):
    params = {
        "W": uniform(rng, (IN, 3 * HID), HID),
        "U": uniform(rng, (HID, 3 * HID), HID),
        "b_ih": uniform(rng, (3 * HID,), HID),
        "b_hh": uniform(rng, (3 * HID,), HID),
        "wd": uniform(rng, (HID, OUT), HID),
        "bd": uniform(rng, (OUT,), HID),
    }
    data = {
        "x": rng.standard_normal((SEQ, BATCH, IN), dtype=np.float32),
        "y": rng.integers(0, OUT, BATCH).astype(np.int64),
    }
    return params, data


def graphc(gc, backend, params, data, seq=None):
    seq = SEQ if seq is None else seq
    nn = gc.nn
    gru = nn.GRU(HID)
    dense = nn.Dense(OUT, init=lstm._given(params["wd"]), bias_init=lstm._given(params["bd"]))
    with gc.Graph("gru") as g:
        x = g.input("x", (BATCH, seq, IN))
        y = g.input("y", (BATCH,), dtype="int64")
        loss = g.output("loss", graphc_cross_entropy(gc, dense(gru(x)), y, OUT))
    weights = {"weight_ih_l0": params["W"].T, "weight_hh_l0": params["U"].T}
    nn.load_torch_weights(gru, {**weights, "bias_ih_l0": params["b_ih"], "bias_hh_l0": params["b_hh"]})
    graphc_sgd(gc, g, loss, LR)
    exe = gc.compile(g, backend=backend, outputs=[loss], apply_updates=True)  # a training step
    xv, yv = np.ascontiguousarray(lstm._steps(data["x"], seq).transpose(1, 0, 2)), data["y"]
    return lambda: exe(x=xv, y=yv)[0]


def torch(torch, params, data):
    F = torch.nn.functional
    gru = torch.nn.GRU(IN, HID)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(torch.from_numpy(params["W"].T.copy()))
        gru.weight_hh_l0.copy_(torch.from_numpy(params["U"].T.copy()))
        gru.bias_ih_l0.copy_(torch.from_numpy(params["b_ih"]))
        gru.bias_hh_l0.copy_(torch.from_numpy(params["b_hh"]))
    wd = torch.tensor(params["wd"].T.copy(), requires_grad=True)
    bd = torch.tensor(params["bd"], requires_grad=True)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])

    def loss_fn():
        _, h = gru(x)
        return F.cross_entropy(F.linear(h[0], wd, bd), y)

    return torch_train_step(torch, [*gru.parameters(), wd, bd], loss_fn, LR)


def jax(jax, params, data):
    jnp = jax.numpy

    def loss_fn(p, x, y):
        def cell(h, xt):
            xr, xz, xn = jnp.split(xt @ p["W"] + p["b_ih"], 3, axis=1)
            hr, hz, hn = jnp.split(h @ p["U"] + p["b_hh"], 3, axis=1)
            r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + r * hn)
            return (1 - z) * n + z * h, None

        h, _ = jax.lax.scan(cell, jnp.zeros((BATCH, HID), jnp.float32), x)
        return jax_cross_entropy(jax, h @ p["wd"] + p["bd"], y)

    return jax_train_step(jax, params, loss_fn, [data["x"], data["y"].astype(np.int32)], LR)
