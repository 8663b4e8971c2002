"""cnn: LeNet-5 on 1x28x28, batch 64, one SGD training step.

conv5x5(6)+relu, maxpool2, conv5x5(16)+relu, maxpool2, dense 120, 84, 10 (ReLU between
dense layers), softmax cross-entropy. Convolutions are unpadded ("valid"), so the feature
maps are 24x24 -> 12x12 -> 8x8 -> 4x4 and the first dense layer sees 16*4*4 = 256 features.
"""

import numpy as np

from .common import graphc_cross_entropy, graphc_sgd, jax_cross_entropy, jax_train_step, torch_train_step, uniform

NAME = "cnn"
DESCRIPTION = "LeNet-5 (conv5x5x6, pool, conv5x5x16, pool, 120, 84, 10), 1x28x28, batch 64, SGD step"
TRAINING = True
REPEATS = 50
LR = 0.05
BATCH = 64
CONVS = ((1, 6), (6, 16))  # (in, out) channels, 5x5 kernels
DENSE = (16 * 4 * 4, 120, 84, 10)


def make(rng):
    params = {}
    for i, (cin, cout) in enumerate(CONVS):
        params[f"conv{i}_w"] = uniform(rng, (cout, cin, 5, 5), cin * 25)
        params[f"conv{i}_b"] = uniform(rng, (cout,), cin * 25)
    for i, (a, b) in enumerate(zip(DENSE, DENSE[1:])):
        params[f"fc{i}_w"] = uniform(rng, (a, b), a)
        params[f"fc{i}_b"] = uniform(rng, (b,), a)
    data = {
        "x": rng.standard_normal((BATCH, 1, 28, 28), dtype=np.float32),
        "y": rng.integers(0, DENSE[-1], BATCH).astype(np.int64),
    }
    return params, data


def graphc(gc, backend, params, data):
    def p(name, shape=None):
        v = params[name] if shape is None else params[name].reshape(shape)
        return g.param(name, v.shape, init=v)

    with gc.Graph("lenet5") as g:
        h = g.input("x", ("batch", 1, 28, 28))
        y = g.input("y", ("batch",), dtype="int64")
        for i, (_, cout) in enumerate(CONVS):
            # the bias is declared (C, 1, 1) so it broadcasts over (N, C, H, W)
            h = gc.relu(gc.conv2d(h, p(f"conv{i}_w")) + p(f"conv{i}_b", (cout, 1, 1)))
            h = gc.max_pool2d(h, 2)
        h = gc.flatten(h)
        for i in range(len(DENSE) - 1):
            h = h @ p(f"fc{i}_w") + p(f"fc{i}_b")
            if i < len(DENSE) - 2:
                h = gc.relu(h)
        loss = g.output("loss", graphc_cross_entropy(gc, h, y, DENSE[-1]))
    graphc_sgd(gc, g, loss, LR)
    exe = gc.compile(g, backend=backend, outputs=[loss], apply_updates=True)  # a training step
    x, yv = data["x"], data["y"]
    return lambda: exe(x=x, y=yv)[0]


def torch(torch, params, data):
    F = torch.nn.functional
    t = {k: torch.tensor(v.T.copy() if k.startswith("fc") and k.endswith("_w") else v, requires_grad=True)
         for k, v in params.items()}  # fmt: skip
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])

    def loss_fn():
        h = x
        for i in range(len(CONVS)):
            h = F.max_pool2d(F.relu(F.conv2d(h, t[f"conv{i}_w"], t[f"conv{i}_b"])), 2)
        h = h.flatten(1)
        for i in range(len(DENSE) - 1):
            h = F.linear(h, t[f"fc{i}_w"], t[f"fc{i}_b"])
            if i < len(DENSE) - 2:
                h = F.relu(h)
        return F.cross_entropy(h, y)

    return torch_train_step(torch, list(t.values()), loss_fn, LR)


def jax(jax, params, data):
    lax = jax.lax
    NCHW = ("NCHW", "OIHW", "NCHW")

    def loss_fn(p, x, y):
        h = x
        for i in range(len(CONVS)):
            h = lax.conv_general_dilated(h, p[f"conv{i}_w"], (1, 1), "VALID", dimension_numbers=NCHW)
            h = jax.nn.relu(h + p[f"conv{i}_b"][None, :, None, None])
            h = lax.reduce_window(h, -np.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = h.reshape(h.shape[0], -1)
        for i in range(len(DENSE) - 1):
            h = h @ p[f"fc{i}_w"] + p[f"fc{i}_b"]
            if i < len(DENSE) - 2:
                h = jax.nn.relu(h)
        return jax_cross_entropy(jax, h, y)

    return jax_train_step(jax, params, loss_fn, [data["x"], data["y"].astype(np.int32)], LR)
