"""graphc in one page: declare, print, differentiate, run, second order, save/load, draw.

python examples/quickstart.py --out out
graphc render examples/quickstart.py --view backward -o quickstart.svg   # build(): the graph with its gradients
"""

import argparse
import time
from pathlib import Path

import numpy as np

import graphc as gc


def declare(batch_dim="batch"):
    """A 2-layer MLP with tanh and a mean-squared loss; 'batch' is bound when it runs."""
    with gc.Graph("quickstart", seed=0) as g:
        x = g.input("x", (batch_dim, 4))
        t = g.input("t", (batch_dim, 1))
        with g.scope("hidden"):
            w1 = g.param("w", (4, 8))
            b1 = g.param("b", (8,), init="zeros")
            h = gc.tanh(x @ w1 + b1)
        with g.scope("out"):
            w2 = g.param("w", (8, 1))
            b2 = g.param("b", (1,), init="zeros")
            y = h @ w2 + b2
        loss = gc.mean((y - t) ** 2)
        g.output("loss", loss)
    return g, loss


def build():
    """The graph main declares, with the gradients of the loss as outputs `d/<parameter>` (what
    `graphc render` draws)."""
    g, loss = declare()
    for name, node in gc.gradients(loss).items():
        g.output(f"d/{name}", node)
    return g


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out", help="directory for the saved graph and drawings (default ./out)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    g, loss = declare()
    print("== forward graph ==")
    print(g.text())

    # Symbolic differentiation: the gradients are new nodes in the same graph.
    grads = gc.gradients(loss)  # {"hidden/w": node, "hidden/b": ..., "out/w": ..., "out/b": ...}
    for name, node in grads.items():
        g.output(f"d/{name}", node)
    print("\n== backward part ==")
    print(g.text(backward=True))

    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((16, 4)).astype(np.float32)}
    feeds["t"] = np.sin(feeds["x"].sum(axis=1, keepdims=True))
    res = gc.run(g, feeds)  # the NumPy reference interpreter
    print(f"\nloss = {float(res['loss']):.5f}")
    for name in grads:
        print(f"  |d loss / d {name}| = {np.linalg.norm(res['d/' + name]):.5f}")

    # Second order: a Hessian-vector product H v = d/dw (grad(w) . v), by differentiating again.
    w = g.params["out/w"]
    v = gc.constant(np.ones(w.shape, np.float32), graph=g)
    hvp = gc.grad(gc.sum(grads["out/w"] * v), w)
    hv = gc.run(g, feeds, outputs=hvp)
    # Check: a central difference of the gradient along v (exact here: the loss is quadratic in out/w).
    eps = 1e-2
    fd = (_grad_at(g, feeds, "out/w", eps) - _grad_at(g, feeds, "out/w", -eps)) / (2 * eps)
    print(f"\nHessian-vector product (out/w, v = ones): {hv.ravel().round(4)}")
    print(f"finite-difference check:                  {fd.ravel().round(4)}")

    # Save and load: JSON structure + .npz parameter values; identical text and results.
    path = out / "quickstart.json"
    g.save(path)
    g2 = gc.load_graph(path)
    same = g2.text() == g.text() and float(gc.run(g2, feeds)["loss"]) == float(res["loss"])
    print(f"\nsaved {path} (+ its .npz of arrays); reloaded graph identical: {same}")

    # Drawings: forward and backward (SVG when Graphviz's `dot` is installed, .gv always).
    written = []
    for part in ("forward", "backward"):
        written += gc.render(g, out / f"{part}.svg", part=part, title=f"quickstart: {part}")
    print("drawings:", ", ".join(str(p) for p in written))
    print(f"done in {time.perf_counter() - start:.2f} s")
    return 0


def _grad_at(g, feeds, name, delta):
    """The gradient wrt parameter `name` with that parameter moved by delta * ones."""
    w = g.values[name]
    saved = w.copy()
    w += delta
    try:
        return gc.run(g, feeds, outputs=g.outputs["d/" + name])
    finally:
        w[...] = saved


if __name__ == "__main__":
    raise SystemExit(main())
