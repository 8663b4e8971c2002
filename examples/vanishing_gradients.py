"""Vanishing gradients: how much of the loss's gradient reaches each time step, SimpleRNN vs LSTM.

The task needs a long memory: a sequence of T = 100 random values in [-1, 1], and the target is
the first of them (y = x_0), read by a Dense layer from the last state. For each cell, freshly
initialised (graphc's defaults: orthogonal recurrent kernels, the LSTM's forget bias at 1), the
gradient of the mean-squared loss with respect to every input step, d loss / d x_t, is one
backward pass of the graph (gc.grad through the scan, i.e. backpropagation through time); its
norm over a batch of sequences, for each t, is averaged (geometrically) over a few seeds.

Through the SimpleRNN the gradient shrinks by a near-constant factor per step back in time (about
x0.92), so x_0, the one input that matters, gets about 3e-4 of what the last step gets; through
the LSTM's additive cell path it shrinks more slowly (about x0.97 per step) and levels off, so
x_0 gets about 2.5e-2 of the last step's, and ten times more than through the SimpleRNN. The plot
(log scale) shows both curves.

    python examples/vanishing_gradients.py --out vg_out         # writes vg_out/gradient_norms.png
    graphc render examples/vanishing_gradients.py -o lstm.svg   # build(): the LSTM's training graph
"""

import argparse
from pathlib import Path

import numpy as np

import graphc as gc
from graphc import nn

CELLS = {"SimpleRNN": nn.SimpleRNN, "LSTM": nn.LSTM}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100, help="sequence length T")
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=256, help="sequences the gradient norm is taken over")
    p.add_argument("--inits", type=int, default=5, help="random initialisations averaged per cell")
    p.add_argument("--out", default=None, help="folder for gradient_norms.png")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no effect: there is no progress bar")
    return p.parse_args(argv)


def declare(cell: str, steps: int, units: int, seed: int = 0):
    """The training graph of `cell` on the memory task; its output `grad_x` is d loss / d x."""
    with gc.Graph(f"{cell.lower()}_memory", seed=seed) as g:
        x = g.input("x", ("batch", steps, 1))
        y = g.input("y", ("batch", 1))
        h = CELLS[cell](units)(x)
        loss = nn.mse(nn.Dense(1)(h), y)
        g.output("loss", loss)
        g.output("grad_x", gc.grad(loss, x))
    return nn.training_graph(loss, nn.optim.Adam(1e-3, clip_norm=1.0))


def build():
    """The LSTM's training graph (what `graphc render` draws)."""
    args = parse_args([])
    return declare("LSTM", args.steps, args.units, args.seed)


def memory_batch(rng, batch: int, steps: int) -> dict:
    """Sequences of uniform noise; the target is each sequence's first value."""
    x = rng.uniform(-1.0, 1.0, (batch, steps, 1)).astype(np.float32)
    return {"x": x, "y": np.ascontiguousarray(x[:, 0])}


def gradient_norms(cell: str, args, backend: str | None) -> np.ndarray:
    """||d loss / d x_t|| over the batch for t = 0..T-1, the geometric mean over `args.inits` seeds."""
    from graphc.nn.model import default_backend

    feeds = memory_batch(np.random.default_rng(args.seed), args.batch_size, args.steps)
    logs = []
    for k in range(args.inits):
        tg = declare(cell, args.steps, args.units, seed=args.seed + k)
        probe = gc.compile(tg.graph, backend or default_backend(), outputs=["grad_x"], apply_updates=False)
        grad = np.asarray(probe(**feeds)[0], np.float64)
        logs.append(np.log(np.linalg.norm(grad[:, :, 0], axis=0)))
    return np.exp(np.mean(logs, axis=0))


def plot(path, norms: dict, steps: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, n in norms.items():
        ax.semilogy(np.arange(steps), n, lw=2, label=f"{name}: x_0 gets {n[0] / n[-1]:.1e} of x_{steps - 1}'s")
    ax.set_xlabel("time step t (the target is x_0; the loss is read after the last step)")
    ax.set_ylabel("||d loss / d x_t||")
    ax.set_title(f"gradient through time at initialisation, T = {steps}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    args = parse_args(argv)
    norms = {cell: gradient_norms(cell, args, args.backend) for cell in CELLS}
    ratios = {cell: float(n[0] / n[-1]) for cell, n in norms.items()}
    # the mean factor per step back in time, from the slope of log-norm over t
    per_step = {cell: float(np.exp(-np.polyfit(np.arange(args.steps), np.log(n), 1)[0])) for cell, n in norms.items()}
    if args.out:
        print(f"wrote {plot(Path(args.out) / 'gradient_norms.png', norms, args.steps)}")
    for cell in CELLS:
        print(f"{cell}: the gradient shrinks by x{per_step[cell]:.3f} per step back")
    print("|dL/dx_0| / |dL/dx_T-1|: " + ", ".join(f"{c} {r:.1e}" for c, r in ratios.items()))
    return {"norms": norms, "ratios": ratios, "per_step": per_step}


if __name__ == "__main__":
    main()
