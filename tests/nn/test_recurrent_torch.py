"""Weights in PyTorch's layout give the outputs of PyTorch's documented equations (written here in
NumPy, no PyTorch needed): nn.RNN (tanh, relu), nn.LSTM, nn.GRU, stacked and bidirectional, and
packed (variable-length) batches, where PyTorch runs each row over its own valid steps only."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, GraphStructureError, ShapeError

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _cell(kind, sd, s, x, state):
    """One step of PyTorch's equations (docs of torch.nn.RNN / LSTM / GRU) for one row."""
    w_ih, w_hh, b_ih, b_hh = (sd[f"{p}{s}"] for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    h = state[0]
    if kind.startswith("rnn"):
        z = w_ih @ x + b_ih + w_hh @ h + b_hh
        return (np.tanh(z) if kind == "rnn_tanh" else np.maximum(z, 0.0),)
    if kind == "lstm":
        i, f, g, o = np.split(w_ih @ x + b_ih + w_hh @ h + b_hh, 4)
        c = _sigmoid(f) * state[1] + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    xr, xz, xn = np.split(w_ih @ x + b_ih, 3)
    hr, hz, hn = np.split(w_hh @ h + b_hh, 3)
    r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def torch_reference(kind, sd, x, units, num_layers=1, bidirectional=False, lengths=None, state0=None):
    """(output (batch, time, D*units), h_n[, c_n] (L*D, batch, units)) as PyTorch computes them, a
    padded batch as a PackedSequence (outputs zero past each row's length)."""
    batch, time, _ = x.shape
    dirs = 2 if bidirectional else 1
    lengths = [time] * batch if lengths is None else list(lengths)
    leaves = 2 if kind == "lstm" else 1
    out = np.zeros((batch, time, dirs * units))
    finals = np.zeros((leaves, num_layers * dirs, batch, units))
    for b in range(batch):
        seq = x[b, : lengths[b]]
        for k in range(num_layers):
            outs = []
            for d in range(dirs):
                s = f"_l{k}" + ("_reverse" if d else "")
                j = k * dirs + d
                state = tuple(np.zeros(units) if state0 is None else state0[i][j, b] for i in range(leaves))
                ys = np.zeros((len(seq), units))
                for t in reversed(range(len(seq))) if d else range(len(seq)):
                    state = _cell(kind, sd, s, seq[t], state)
                    ys[t] = state[0]
                finals[:, j, b] = state
                outs.append(ys)
            seq = np.concatenate(outs, axis=1)
        out[b, : lengths[b]] = seq
    return out, finals


def random_state_dict(kind, rng, n_in, units, num_layers=1, bidirectional=False):
    g = GATES[kind] * units
    sd = {}
    for k in range(num_layers):
        for s in ("", "_reverse") if bidirectional else ("",):
            fan = n_in if k == 0 else units * (2 if bidirectional else 1)
            sd[f"weight_ih_l{k}{s}"] = rng.uniform(-0.6, 0.6, (g, fan))
            sd[f"weight_hh_l{k}{s}"] = rng.uniform(-0.6, 0.6, (g, units))
            sd[f"bias_ih_l{k}{s}"] = rng.uniform(-0.4, 0.4, g)
            sd[f"bias_hh_l{k}{s}"] = rng.uniform(-0.4, 0.4, g)
    return sd


def make_layer(kind, units, **kw):
    if kind.startswith("rnn"):
        return nn.SimpleRNN(units, activation=kind[4:], **kw)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](units, **kw)


def _run_layer(kind, sd, x, units, lengths=None, state0=None, backend="reference", **kw):
    layer = make_layer(kind, units, return_sequences=True, return_state=True, **kw)
    with gc.Graph("torch_layout") as g:
        xn = g.input("x", ("batch", x.shape[1], x.shape[2]), "float64")
        feeds = {"x": x}
        ln = None
        if lengths is not None:
            ln = g.input("n", ("batch",), "int64")
            feeds["n"] = np.asarray(lengths, np.int64)
        init = None
        if state0 is not None:
            shape = (len(state0[0]), "batch", units) if len(state0[0]) > 1 else ("batch", units)
            leaves = [g.input(f"s{i}", shape, "float64") for i in range(len(state0))]
            for i, s in enumerate(state0):
                feeds[f"s{i}"] = s if len(s) > 1 else s[0]
            init = tuple(leaves) if kind == "lstm" else leaves[0]
        y, state = layer(xn, initial_state=init, lengths=ln)
        states = state if isinstance(state, tuple) else (state,)
        outs = [y, *states]
    nn.load_torch_weights(layer, sd)
    got = gc.compile(g, backend, outputs=outs)(feeds)
    return got[0], [s if s.ndim == 3 else s[None] for s in got[1:]]


CASES = [
    ("rnn_tanh", {}),
    ("rnn_relu", {}),
    ("lstm", {}),
    ("gru", {}),
    ("lstm", {"num_layers": 2, "bidirectional": True}),
    ("gru", {"num_layers": 2}),
    ("rnn_tanh", {"bidirectional": True}),
]


@pytest.mark.parametrize("kind,kw", CASES)
def test_torch_weights_give_torch_outputs(kind, kw):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 4))
    sd = random_state_dict(kind, rng, 4, 3, **kw)
    want_y, want_states = torch_reference(kind, sd, x, 3, **kw)
    y, states = _run_layer(kind, sd, x, 3, **kw)
    np.testing.assert_allclose(y, want_y, rtol=1e-10, atol=1e-12)
    for got, want in zip(states, want_states):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_packed_batches_and_initial_state_match_torch(kind):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 3))
    lengths = [6, 2, 0, 4]
    sd = random_state_dict(kind, rng, 3, 2, num_layers=2, bidirectional=True)
    leaves = 2 if kind == "lstm" else 1
    state0 = [rng.standard_normal((4, 4, 2)) for _ in range(leaves)]
    want_y, want_states = torch_reference(kind, sd, x, 2, 2, True, lengths, state0)
    y, states = _run_layer(kind, sd, x, 2, lengths, state0, num_layers=2, bidirectional=True)
    np.testing.assert_allclose(y, want_y, rtol=1e-9, atol=1e-12)
    for got, want in zip(states, want_states):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_state_dict_round_trip():
    rng = np.random.default_rng(3)
    sd = random_state_dict("gru", rng, 4, 3, bidirectional=True)
    layer = _built(nn.GRU(3, bidirectional=True))
    nn.load_torch_weights(layer, sd)
    back = nn.torch_state_dict(layer)
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_allclose(back[k], sd[k], rtol=1e-6, err_msg=k)


def _input(shape):
    from graphc.ir.graph import current_graph

    return current_graph().input("x", shape)


def _built(layer, shape=(2, 5, 4)):
    with gc.Graph():
        layer(_input(shape))
    return layer


def test_bad_state_dicts_name_the_entry():
    rng = np.random.default_rng(4)
    sd = random_state_dict("lstm", rng, 4, 3)
    layer = _built(nn.LSTM(3))
    before = {k: v.copy() for k, v in layer.graph.values.items()}
    missing = {k: v for k, v in sd.items() if k != "weight_hh_l0"}
    with pytest.raises(AttributeValueError, match=r"LSTM 'lstm'.*has no 'weight_hh_l0' \(shape \(12, 3\)\)"):
        nn.load_torch_weights(layer, missing)
    wrong = {**sd, "weight_ih_l0": sd["weight_ih_l0"][:, :3]}
    with pytest.raises(ShapeError, match=r"'weight_ih_l0' has shape \(12, 3\), expected \(12, 4\)"):
        nn.load_torch_weights(layer, wrong)
    extra = {**sd, "weight_ih_l0_reverse": sd["weight_ih_l0"]}
    with pytest.raises(AttributeValueError, match=r"unexpected entries \['weight_ih_l0_reverse'\]"):
        nn.load_torch_weights(layer, extra)
    gru = _built(nn.GRU(3))
    with pytest.raises(ShapeError, match=r"'weight_ih_l0' has shape \(12, 4\), expected \(9, 4\)"):
        nn.load_torch_weights(gru, sd)  # an LSTM's weights for a GRU
    for k, v in layer.graph.values.items():  # nothing half-written
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(GraphStructureError, match=r"load_torch_weights: LSTM 'lstm' is not built yet"):
        nn.load_torch_weights(nn.LSTM(3), sd)
    with pytest.raises(AttributeValueError, match=r"expects a SimpleRNN, LSTM or GRU layer"):
        nn.load_torch_weights(nn.Dense(3), sd)


def test_bias_free_modules_load_zero_biases():
    rng = np.random.default_rng(5)
    sd = {k: v for k, v in random_state_dict("rnn_tanh", rng, 4, 3).items() if k.startswith("weight")}
    x = rng.standard_normal((2, 5, 4))
    want, _ = torch_reference("rnn_tanh", {**sd, "bias_ih_l0": np.zeros(3), "bias_hh_l0": np.zeros(3)}, x, 3)
    y, _ = _run_layer("rnn_tanh", sd, x, 3)
    np.testing.assert_allclose(y, want, rtol=1e-10, atol=1e-12)
