"""Finite-difference gradient checks used across the test suite (float64, central differences)."""

import numpy as np

import graphc as gc


def _graph(arrays: dict, build, dtypes=None):
    g = gc.Graph("gradcheck")
    with g:
        nodes = {k: g.input(k, v.shape, (dtypes or {}).get(k, str(v.dtype))) for k, v in arrays.items()}
        out = build(**nodes)
    return g, nodes, out


def _projected(out, rng):
    """A scalar whose gradient checks the whole Jacobian: sum(out * random weights)."""
    if out.shape == ():
        return out
    w = gc.constant(rng.standard_normal([int(d) for d in out.shape]), out.dtype, graph=out.graph)
    return gc.sum(out * w)


def numeric_grad(f, x: np.ndarray, eps: float) -> np.ndarray:
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f()
        flat[i] = old - eps
        lo = f()
        flat[i] = old
        grad.reshape(-1)[i] = (hi - lo) / (2 * eps)
    return grad


def check_grad(build, arrays: dict, wrt=None, eps=1e-6, rtol=1e-5, atol=1e-6, seed=0):
    """Assert that gc.grad of build(**inputs) matches central differences for each `wrt` input.

    `arrays` are float64 (or integer, for labels/indices) inputs; non-scalar outputs are projected
    onto random weights so every Jacobian entry is exercised.
    """
    rng = np.random.default_rng(seed)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    g, nodes, out = _graph(arrays, build)
    loss = _projected(out, rng)
    wrt = [k for k, v in arrays.items() if v.dtype.kind == "f"] if wrt is None else list(wrt)
    grads = gc.grad(loss, [nodes[k] for k in wrt])
    analytic = gc.run(g, arrays, outputs=grads)
    for k, a in zip(wrt, analytic):
        num = numeric_grad(lambda: float(gc.run(g, arrays, outputs=loss)), arrays[k], eps)
        np.testing.assert_allclose(a, num, rtol=rtol, atol=atol, err_msg=f"gradient wrt {k}")
    return analytic


def check_second_order(build, arrays: dict, wrt: str, eps=1e-5, rtol=1e-4, atol=1e-5, seed=1):
    """Check a Hessian-vector product: grad(sum(grad(f, x) * v), x) against differences of grad."""
    rng = np.random.default_rng(seed)
    arrays = {k: np.array(v) for k, v in arrays.items()}
    g, nodes, out = _graph(arrays, build)
    loss = _projected(out, rng)
    x = nodes[wrt]
    gx = gc.grad(loss, x)
    v = gc.constant(rng.standard_normal(arrays[wrt].shape), x.dtype, graph=g)
    hvp = gc.grad(gc.sum(gx * v), x)
    analytic = gc.run(g, arrays, outputs=hvp)
    gv = gc.sum(gx * v)
    num = numeric_grad(lambda: float(gc.run(g, arrays, outputs=gv)), arrays[wrt], eps)
    np.testing.assert_allclose(analytic, num, rtol=rtol, atol=atol, err_msg=f"Hessian-vector product wrt {wrt}")
    return analytic
