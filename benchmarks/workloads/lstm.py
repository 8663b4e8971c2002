"""lstm: one LSTM layer over 50 steps (batch 32, input 32, hidden 128), last state -> dense 10,
softmax cross-entropy, one SGD training step.

Gates are packed in PyTorch's order (input, forget, cell, output): W (in, 4H), U (H, 4H), one
bias b (4H). graphc runs `nn.LSTM` (one `gc.scan`, its gradient a reverse scan, both native
loops on the numba backend) and `nn.Dense`; JAX runs the same cell under lax.scan; PyTorch
runs nn.LSTM (its native CPU kernel) with b as bias_ih and a frozen zero bias_hh.
"""

import numpy as np

from .common import graphc_cross_entropy, graphc_sgd, jax_cross_entropy, jax_train_step, torch_train_step, uniform

NAME = "lstm"
DESCRIPTION = "LSTM seq 50, batch 32, input 32, hidden 128, last state -> dense 10, SGD step"
TRAINING = True
REPEATS = 30
LR = 0.05
SEQ, BATCH, IN, HID, OUT = 50, 32, 32, 128, 10


def make(rng):
    params = {
        "W": uniform(rng, (IN, 4 * HID), HID),
        "U": uniform(rng, (HID, 4 * HID), HID),
        "b": uniform(rng, (4 * HID,), HID),
        "wd": uniform(rng, (HID, OUT), HID),
        "bd": uniform(rng, (OUT,), HID),
    }
    data = {
        "x": rng.standard_normal((SEQ, BATCH, IN), dtype=np.float32),
        "y": rng.integers(0, OUT, BATCH).astype(np.int64),
    }
    return params, data


def graphc(gc, backend, params, data, seq=None):
    """nn.LSTM (batch-first: the time-major data is transposed once, outside the timed step) ->
    nn.Dense; `seq` builds it for another sequence length (benchmarks/scan_compile.py)."""
    seq = SEQ if seq is None else seq
    nn = gc.nn
    lstm = nn.LSTM(HID, init=_given(params["W"]), recurrent_init=_given(params["U"]), bias_init=_given(params["b"]))
    dense = nn.Dense(OUT, init=_given(params["wd"]), bias_init=_given(params["bd"]))
    with gc.Graph("lstm") as g:
        x = g.input("x", (BATCH, seq, IN))
        y = g.input("y", (BATCH,), dtype="int64")
        loss = g.output("loss", graphc_cross_entropy(gc, dense(lstm(x)), y, OUT))
    graphc_sgd(gc, g, loss, LR)
    exe = gc.compile(g, backend=backend, outputs=[loss], apply_updates=True)  # a training step
    xv, yv = np.ascontiguousarray(_steps(data["x"], seq).transpose(1, 0, 2)), data["y"]
    return lambda: exe(x=xv, y=yv)[0]


def _given(array):
    """An initializer that returns the workload's array (the same weights as every peer)."""
    return lambda shape, rng: array


def _steps(x, seq):
    """The batch's first `seq` steps, or its sequence repeated to `seq` steps."""
    return x[:seq] if seq <= x.shape[0] else np.resize(x, (seq, *x.shape[1:]))


def torch(torch, params, data):
    F = torch.nn.functional
    lstm = torch.nn.LSTM(IN, HID)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(params["W"].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(params["U"].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(params["b"]))
        lstm.bias_hh_l0.zero_()
    lstm.bias_hh_l0.requires_grad_(False)  # one bias, as in the other systems
    wd = torch.tensor(params["wd"].T.copy(), requires_grad=True)
    bd = torch.tensor(params["bd"], requires_grad=True)
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])

    def loss_fn():
        _, (h, _) = lstm(x)
        return F.cross_entropy(F.linear(h[0], wd, bd), y)

    trainable = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, wd, bd]
    return torch_train_step(torch, trainable, loss_fn, LR)


def jax(jax, params, data):
    jnp = jax.numpy

    def loss_fn(p, x, y):
        def cell(carry, xt):
            h, c = carry
            i, f, g, o = jnp.split(xt @ p["W"] + h @ p["U"] + p["b"], 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), None

        zeros = jnp.zeros((BATCH, HID), jnp.float32)
        (h, _), _ = jax.lax.scan(cell, (zeros, zeros), x)
        return jax_cross_entropy(jax, h @ p["wd"] + p["bd"], y)

    return jax_train_step(jax, params, loss_fn, [data["x"], data["y"].astype(np.int32)], LR)
