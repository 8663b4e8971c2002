"""A tanh RNN written with gc.scan, trained to give the running mean of a noisy sequence.

h_t = tanh(x_t W_ih + h_{t-1} W_hh + b); the prediction is h_T W_out + b_out, and the target the
mean of the sequence. The loop is one scan node (its body drawn once in `graphc render`), and
its gradient a reverse scan; Adam trains it on fresh random batches.

    python examples/tanh_rnn.py --steps 300      # final loss well below the starting one
    graphc render examples/tanh_rnn.py -o rnn.svg   # build(): the training graph
"""

import argparse

import numpy as np

import graphc as gc
from graphc import nn


def declare(steps=8, features=1, hidden=16, seed=0):
    """The training graph: the RNN over `steps` time steps, a mean-squared loss and Adam."""
    with gc.Graph("tanh_rnn", seed=seed) as g:
        xs = g.input("xs", (steps, "batch", features))
        target = g.input("target", ("batch", 1))
        with g.scope("rnn"):
            w_ih = g.param("w_ih", (features, hidden))
            w_hh = g.param("w_hh", (hidden, hidden))
            b = g.param("b", (hidden,), init="zeros")
            h0 = gc.zeros_like(xs[0] @ w_ih)

            def cell(h, x_t):
                h = gc.tanh(x_t @ w_ih + h @ w_hh + b)
                return h, None

            h_last, _ = gc.scan(cell, h0, xs)
        with g.scope("head"):
            w = g.param("w", (hidden, 1))
            c = g.param("c", (1,), init="zeros")
            y = h_last @ w + c
        loss = gc.mean((y - target) ** 2)
        g.output("loss", loss)
    return nn.training_graph(loss, nn.optim.Adam(1e-2))


def build():
    """The training graph main trains (what `graphc render` draws)."""
    return declare()


def batch(rng, steps=8, batch_size=32):
    xs = rng.uniform(-1, 1, (steps, batch_size, 1)).astype(np.float32)
    return {"xs": xs, "target": xs.mean(axis=0)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps")
    p.add_argument("--backend", default="reference", help="reference or numba (default: reference)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    step = gc.compile(declare(seed=args.seed).graph, args.backend)
    rng = np.random.default_rng(args.seed)
    losses = [float(step(**batch(rng))["loss"]) for _ in range(args.steps)]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    print(f"loss: {first:.4f} over the first 10 steps, {last:.4f} over the last 10")
    return {"first": first, "last": last}


if __name__ == "__main__":
    main()
