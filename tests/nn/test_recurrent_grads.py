"""Gradients of SimpleRNN, LSTM and GRU (single, stacked, bidirectional, masked, from a given
initial state) against central finite differences in float64: with respect to the input, the
initial state and (a sample of the entries of) every parameter."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn

B, T, FEAT, H = 2, 3, 2, 2
EPS = 1e-6


def _layer(kind, **kw):
    if kind == "rnn":
        return nn.SimpleRNN(H, **kw)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](H, **kw)


CASES = [
    ("rnn", {}, False),
    ("lstm", {}, False),
    ("gru", {}, False),
    ("rnn", {"num_layers": 2, "activation": "relu"}, True),
    ("lstm", {"num_layers": 2, "bidirectional": True}, True),
    ("gru", {"bidirectional": True}, True),
]


@pytest.mark.parametrize("kind,kw,masked", CASES)
def test_gradients_match_finite_differences(kind, kw, masked):
    rng = np.random.default_rng(7)
    layer = _layer(kind, return_sequences=True, return_state=True, **kw)
    n = layer.num_layers * layer.directions
    leaves = 2 if kind == "lstm" else 1
    shape = (B, H) if n == 1 else (n, B, H)
    with gc.Graph("fd") as g:
        x = g.input("x", (B, T, FEAT), "float64")
        state = [g.input(f"s{i}", shape, "float64") for i in range(leaves)]
        lengths = g.input("n", (B,), "int32") if masked else None
        y, final = layer(x, initial_state=tuple(state) if leaves == 2 else state[0], lengths=lengths)
        outs = [y, *(final if isinstance(final, tuple) else [final])]
        loss = sum(gc.sum(o * gc.constant(rng.standard_normal(o.shape))) for o in outs)
        params = list(layer.params.values())
        grads = gc.grad(loss, [x, *state, *params])
    feeds = {"x": rng.standard_normal((B, T, FEAT)), **{f"s{i}": rng.standard_normal(shape) for i in range(leaves)}}
    if masked:
        feeds["n"] = np.array([1, T], np.int32)
    step = gc.compile(g, "reference", outputs=[loss, *grads])

    def f():
        return float(step(feeds)[0])

    analytic = step(feeds)[1:]
    targets = [feeds["x"], *(feeds[f"s{i}"] for i in range(leaves)), *(g.values[p.name] for p in params)]
    for name, arr, a in zip(["x", *(f"s{i}" for i in range(leaves)), *(p.name for p in params)], targets, analytic):
        flat = arr.reshape(-1)
        picks = range(flat.size) if flat.size <= 5 else rng.choice(flat.size, 5, replace=False)
        for i in picks:
            old = flat[i]
            flat[i] = old + EPS
            hi = f()
            flat[i] = old - EPS
            lo = f()
            flat[i] = old
            np.testing.assert_allclose(a.reshape(-1)[i], (hi - lo) / (2 * EPS), rtol=1e-5, atol=1e-7, err_msg=name)
