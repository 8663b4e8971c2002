"""mlp: 784-512-256-10 ReLU MLP, softmax cross-entropy, batch 128, one SGD training step."""

import numpy as np

from .common import graphc_cross_entropy, graphc_sgd, jax_cross_entropy, jax_train_step, torch_train_step, uniform

NAME = "mlp"
DESCRIPTION = "784-512-256-10 ReLU MLP, softmax cross-entropy, batch 128, SGD step"
TRAINING = True
REPEATS = 100
LR = 0.05
BATCH = 128
SIZES = (784, 512, 256, 10)


def make(rng):
    params = {}
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:])):
        params[f"w{i}"] = uniform(rng, (a, b), a)
        params[f"b{i}"] = uniform(rng, (b,), a)
    data = {
        "x": rng.standard_normal((BATCH, SIZES[0]), dtype=np.float32),
        "y": rng.integers(0, SIZES[-1], BATCH).astype(np.int64),
    }
    return params, data


def _layers():
    return range(len(SIZES) - 1)


def graphc(gc, backend, params, data):
    with gc.Graph("mlp") as g:
        h = g.input("x", ("batch", SIZES[0]))
        y = g.input("y", ("batch",), dtype="int64")
        for i in _layers():
            h = h @ g.param(f"w{i}", params[f"w{i}"].shape, init=params[f"w{i}"])
            h = h + g.param(f"b{i}", params[f"b{i}"].shape, init=params[f"b{i}"])
            if i < len(SIZES) - 2:
                h = gc.relu(h)
        loss = g.output("loss", graphc_cross_entropy(gc, h, y, SIZES[-1]))
    graphc_sgd(gc, g, loss, LR)
    exe = gc.compile(g, backend=backend, outputs=[loss], apply_updates=True)  # a training step
    x, yv = data["x"], data["y"]
    return lambda: exe(x=x, y=yv)[0]


def torch(torch, params, data):
    F = torch.nn.functional
    # nn.Linear layout (out, in) so F.linear runs addmm, as a PyTorch model would.
    ws = [torch.tensor(params[f"w{i}"].T.copy(), requires_grad=True) for i in _layers()]
    bs = [torch.tensor(params[f"b{i}"], requires_grad=True) for i in _layers()]
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["y"])

    def loss_fn():
        h = x
        for i in _layers():
            h = F.linear(h, ws[i], bs[i])
            if i < len(SIZES) - 2:
                h = F.relu(h)
        return F.cross_entropy(h, y)

    return torch_train_step(torch, [*ws, *bs], loss_fn, LR)


def jax(jax, params, data):
    def loss_fn(p, x, y):
        h = x
        for i in _layers():
            h = h @ p[f"w{i}"] + p[f"b{i}"]
            if i < len(SIZES) - 2:
                h = jax.nn.relu(h)
        return jax_cross_entropy(jax, h, y)

    return jax_train_step(jax, params, loss_fn, [data["x"], data["y"].astype(np.int32)], LR)
