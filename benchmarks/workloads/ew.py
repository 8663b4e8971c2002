"""ew: y = sigmoid(1.5*x + 0.25) * tanh(x) + 0.5*x over 8M float32 values (inference)."""

import numpy as np

NAME = "ew"
DESCRIPTION = "y = sigmoid(1.5*x + 0.25) * tanh(x) + 0.5*x, 8M float32 (inference)"
TRAINING = False
REPEATS = 20
N = 8 * 1024 * 1024


def make(rng):
    return {}, {"x": rng.standard_normal(N, dtype=np.float32) * 3}


def graphc(gc, backend, params, data):
    with gc.Graph("ew") as g:
        x = g.input("x", (N,))
        y = g.output("y", gc.sigmoid(1.5 * x + 0.25) * gc.tanh(x) + 0.5 * x)
    exe = gc.compile(g, backend=backend, outputs=[y])
    xv = data["x"]
    return lambda: exe(x=xv)[0]


def torch(torch, params, data):
    x = torch.from_numpy(data["x"])

    def step():
        with torch.no_grad():
            return torch.sigmoid(1.5 * x + 0.25) * torch.tanh(x) + 0.5 * x

    return step


def jax(jax, params, data):
    jnp = jax.numpy
    fn = jax.jit(lambda x: jax.nn.sigmoid(1.5 * x + 0.25) * jnp.tanh(x) + 0.5 * x)
    x = jax.device_put(data["x"])
    return lambda: fn(x).block_until_ready()
