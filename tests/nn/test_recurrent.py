"""SimpleRNN, LSTM and GRU equal the same network unrolled by hand as a plain graph (values and
gradients, single, stacked, bidirectional, masked, with an initial state); their options, the
shapes they return, and their errors for bad input."""

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.errors import AttributeValueError, DTypeError, GraphStructureError, IndexRangeError, ShapeError

B, T, FEAT, H = 3, 4, 2, 3


def _sig(v):
    return gc.sigmoid(v)


def _step(kind, w, state, x_t, act):
    """One step from the documented equations, gate blocks sliced by hand (no split, no scan)."""
    h = state[0]

    def gate(z, i):
        return z[:, i * H : (i + 1) * H]

    if kind == "rnn":
        return (act(x_t @ w["w_ih"] + w["b_in"] + h @ w["w_hh"]),)
    if kind == "lstm":
        z = x_t @ w["w_ih"] + w["b_in"] + h @ w["w_hh"]
        c = _sig(gate(z, 1)) * state[1] + _sig(gate(z, 0)) * gc.tanh(gate(z, 2))
        return _sig(gate(z, 3)) * gc.tanh(c), c
    gx, gh = x_t @ w["w_ih"] + w["b_in"], h @ w["w_hh"] + w["b_hh"]
    r, z = _sig(gate(gx, 0) + gate(gh, 0)), _sig(gate(gx, 1) + gate(gh, 1))
    n = gc.tanh(gate(gx, 2) + r * gate(gh, 2))
    return ((1.0 - z) * n + z * h,)


def unrolled(layer, x, lengths=None, state=None):
    """(sequence output (batch, time, D*H), final state leaves (L*D, batch, H)) by hand."""
    kind, dirs, steps = layer.cell_kind, layer.directions, x.shape[1]
    act = getattr(layer, "activation_fn", None)
    leaves = 2 if kind == "lstm" else 1
    seq = [x[:, t, :] for t in range(steps)]
    zero = gc.constant(np.zeros((x.shape[0], H)), x.dtype)
    finals = [[] for _ in range(leaves)]
    for k in range(layer.num_layers):
        outs = []
        for d in range(dirs):
            w = layer.weights[(k, d)]
            j = k * dirs + d
            st = tuple(zero if state is None else state[i][j] for i in range(leaves))
            ys = [None] * steps
            for t in reversed(range(steps)) if d else range(steps):
                new = _step(kind, w, st, seq[t], act)
                y = new[0]
                if lengths is not None:
                    m = gc.reshape(gc.less(gc.constant(np.array(t), lengths.dtype), lengths), (-1, 1))
                    new = tuple(gc.where(m, a, b) for a, b in zip(new, st))
                    y = gc.where(m, new[0], zero)
                st, ys[t] = new, y
            for i in range(leaves):
                finals[i].append(st[i])
            outs.append(ys)
        seq = [o[0] if dirs == 1 else gc.concat([o[0], o[1]], 1) for o in zip(*outs)]
    return gc.stack(seq, axis=1), [gc.stack(f, axis=0) for f in finals]


def _make(kind, **kw):
    if kind == "rnn":
        return nn.SimpleRNN(H, activation=kw.pop("activation", "tanh"), **kw)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[kind](H, **kw)


CONFIGS = [
    ("rnn", {}, False, False),
    ("rnn", {"activation": "relu", "num_layers": 2}, False, False),
    ("lstm", {}, False, False),
    ("lstm", {"num_layers": 2, "bidirectional": True}, True, True),
    ("gru", {"bidirectional": True}, True, False),
    ("gru", {"num_layers": 2}, False, True),
    ("rnn", {"bidirectional": True}, True, True),
]


@pytest.mark.parametrize("kind,kw,masked,with_state", CONFIGS)
def test_equals_the_network_unrolled_by_hand(kind, kw, masked, with_state):
    rng = np.random.default_rng(0)
    layer = _make(kind, return_sequences=True, return_state=True, **kw)
    n = layer.num_layers * layer.directions
    leaves = 2 if kind == "lstm" else 1
    with gc.Graph("unrolled") as g:
        x = g.input("x", (B, T, FEAT), "float64")
        lengths = g.input("n", (B,), "int32") if masked else None
        shape = (B, H) if n == 1 else (n, B, H)
        state = [g.input(f"s{i}", shape, "float64") for i in range(leaves)] if with_state else None
        init = None if state is None else (tuple(state) if leaves == 2 else state[0])
        y, final = layer(x, initial_state=init, lengths=lengths)
        final = list(final) if isinstance(final, tuple) else [final]
        by_hand = [s if n > 1 else [s] for s in state] if with_state else None
        y2, final2 = unrolled(layer, x, lengths, by_hand)
        if n == 1:
            final2 = [f[0] for f in final2]
        weights = [gc.constant(rng.standard_normal(v.shape)) for v in [y, *final]]
        loss = sum(gc.sum(a * wt) for a, wt in zip([y, *final], weights))
        loss2 = sum(gc.sum(a * wt) for a, wt in zip([y2, *final2], weights))
        wrt = [*layer.params.values(), x, *(state or [])]
        outs = [y, *final, *gc.grad(loss, wrt)]
        outs2 = [y2, *final2, *gc.grad(loss2, wrt)]
    feeds = {"x": rng.standard_normal((B, T, FEAT))}
    if masked:
        feeds["n"] = np.array([T, 1, 0], np.int32)
    for i in range(leaves if with_state else 0):
        feeds[f"s{i}"] = rng.standard_normal(shape)
    got = gc.run(g, feeds, outputs=outs)
    want = gc.run(g, feeds, outputs=outs2)
    for o, a, b in zip(outs, got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=o.label)
    if masked:  # padded steps give zeros, a row of length 0 keeps its initial state
        assert not got[0][2].any() and not got[0][1, 1:].any()


def test_return_options_and_parameter_layout():
    with gc.Graph("shapes") as g:
        x = g.input("x", ("batch", "time", 5))
        lstm = nn.LSTM(4, num_layers=2, bidirectional=True, return_state=True)
        y, (h, c) = lstm(x)
        assert (y.type_str, h.type_str, c.type_str) == ("f32[batch,8]", "f32[4,batch,4]", "f32[4,batch,4]")
        seq = nn.GRU(6, return_sequences=True)(x)
        assert seq.type_str == "f32[batch,time,6]"
        assert nn.SimpleRNN(2)(x).type_str == "f32[batch,2]"
    shapes = {k: v.shape for k, v in lstm.params.items()}
    assert shapes == {
        "lstm/w_ih_l0": (5, 16),
        "lstm/w_hh_l0": (4, 16),
        "lstm/b_l0": (16,),
        "lstm/w_ih_l0_reverse": (5, 16),
        "lstm/w_hh_l0_reverse": (4, 16),
        "lstm/b_l0_reverse": (16,),
        "lstm/w_ih_l1": (8, 16),
        "lstm/w_hh_l1": (4, 16),
        "lstm/b_l1": (16,),
        "lstm/w_ih_l1_reverse": (8, 16),
        "lstm/w_hh_l1_reverse": (4, 16),
        "lstm/b_l1_reverse": (16,),
    }
    b = g.values["lstm/b_l0"]
    assert (b[4:8] == 1).all() and not b[:4].any() and not b[8:].any()  # the forget gate's bias starts at 1
    w = g.values["lstm/w_hh_l0"][:, :4]
    np.testing.assert_allclose(w.T @ w, np.eye(4), atol=1e-6)  # orthogonal recurrent blocks
    assert not nn.LSTM(4, unit_forget_bias=False)(x).graph.values["lstm_1/b_l0"].any()


def test_a_sequential_model_trains_a_recurrent_layer():
    rng = np.random.default_rng(1)
    xs = rng.uniform(-1, 1, (64, 6, 1)).astype(np.float32)
    ys = xs.sum(axis=1)
    model = nn.Model(
        nn.Sequential([nn.GRU(8), nn.Dense(1)]),
        input_shape=(6, 1),
        loss="mse",
        optimizer=nn.optim.Adam(0.03),
        backend="reference",
    )
    start = model.evaluate(xs, ys)["loss"]
    model.fit(xs, ys, epochs=15, batch_size=16, progress=False)
    assert model.evaluate(xs, ys)["loss"] < 0.3 * start


def test_dropout_between_layers_only_while_training():
    rng = np.random.default_rng(2)
    layer = nn.LSTM(H, num_layers=2, dropout=0.5)
    with gc.Graph("drop") as g:
        x = g.input("x", (B, T, FEAT))
        a, b = layer(x, training=True), layer(x, training=False)
        one = nn.LSTM(H, dropout=0.5)
        c, d = one(x, training=True), one(x, training=False)
    got = gc.run(g, {"x": rng.standard_normal((B, T, FEAT)).astype(np.float32)}, outputs=[a, b, c, d])
    assert not np.allclose(got[0], got[1])  # the mask between the layers
    np.testing.assert_array_equal(got[2], got[3])  # one layer: nothing between layers to drop


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_inputs_name_the_layer_and_the_shapes():
    with gc.Graph("bad") as g:
        x = g.input("x", (2, 5, 3))
        flat = g.input("flat", (2, 5))
        with pytest.raises(ShapeError, match=r"LSTM 'lstm' expects a \(batch, time, features\) input, got f32\[2,5\]"):
            nn.LSTM(4)(flat)
        lstm = nn.LSTM(4)
        lstm(x)
        with pytest.raises(ShapeError, match=r"LSTM 'lstm' expects a \(batch, time, features\) input, got f32\[2,5\]"):
            lstm(flat)
        h0, c0 = g.input("h0", (2, 4)), g.input("c0", (2, 5))
        with pytest.raises(
            ShapeError,
            match=r"LSTM 'lstm_1': initial state c must be \(batch, units\) = \[2,4\] float32 for the input "
            r"f32\[2,5,3\], got f32\[2,5\]",
        ):
            nn.LSTM(4)(x, initial_state=(h0, c0))
        with pytest.raises(GraphStructureError, match=r"LSTM 'lstm_1': initial_state must be a pair of nodes \(h, c\)"):
            nn.LSTM(4)(x, initial_state=h0)
        with pytest.raises(
            ShapeError,
            match=r"GRU 'gru': initial state h must be \(num_layers \* directions, batch, units\) = \[2,2,4\] float32",
        ):
            nn.GRU(4, bidirectional=True)(x, initial_state=h0)
        with pytest.raises(DTypeError, match=r"SimpleRNN 'simple_rnn': lengths must be an int32/int64 node"):
            nn.SimpleRNN(4)(x, lengths=g.input("fl", (2,)))
        with pytest.raises(ShapeError, match=r"lengths i32\[3\] do not match the batch of the input f32\[2,5,3\]"):
            with nn.sequence_lengths(g.input("n3", (3,), "int32")):
                nn.SimpleRNN(4)(x)
        with pytest.raises(GraphStructureError, match=r"sequence_lengths: lengths must be a graph node"):
            with nn.sequence_lengths([3, 4]):
                pass
        assert nn.current_lengths() is None


def test_bad_options():
    with pytest.raises(AttributeValueError, match=r"LSTM: units must be an int >= 1, got 0"):
        nn.LSTM(0)
    with pytest.raises(AttributeValueError, match=r"GRU: dropout must be a probability in \[0, 1\), got 1.0"):
        nn.GRU(3, dropout=1.0)
    with pytest.raises(AttributeValueError, match=r"SimpleRNN: activation must be 'tanh' or 'relu', got 'sigmoid'"):
        nn.SimpleRNN(3, activation="sigmoid")
    with pytest.raises(AttributeValueError, match=r"LSTM: bidirectional must be True or False, got 1"):
        nn.LSTM(3, bidirectional=1)


def test_lengths_outside_the_time_axis_fail_at_run_time(backend="reference"):  # numba: test_recurrent_numba.py
    with gc.Graph("lengths") as g:
        x = g.input("x", ("batch", "time", 2))
        n = g.input("n", ("batch",), "int64")
        with nn.sequence_lengths(n):
            y = nn.GRU(3)(x)
    step = gc.compile(g, backend, outputs=[y])
    xv = np.zeros((3, 5, 2), np.float32)
    step(x=xv, n=np.array([5, 0, 2]))  # the whole axis and nothing are both fine
    with pytest.raises(IndexRangeError, match=r"GRU 'gru': sequence lengths must lie in \[0, 5\] \(the time axis "):
        step(x=xv, n=np.array([5, 6, 2]))
    with pytest.raises(IndexRangeError, match=r"got -1 at \(0,\), 7 at \(2,\) \(declared at .*test_recurrent.py"):
        step(x=xv, n=np.array([-1, 3, 7]))


def test_a_graph_with_a_masked_bidirectional_lstm_saves_and_loads(tmp_path):
    with gc.Graph("io") as g:
        x, n = g.input("x", ("batch", "time", 2)), g.input("n", ("batch",), "int32")
        with nn.sequence_lengths(n):
            g.output("y", nn.LSTM(3, bidirectional=True)(x))
    g.save(tmp_path / "g.json")
    loaded = gc.load_graph(tmp_path / "g.json")
    x = np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32)
    feeds = {"x": x, "n": np.array([4, 1], np.int32)}
    np.testing.assert_array_equal(gc.run(loaded, feeds)["y"], gc.run(g, feeds)["y"])
    with pytest.raises(IndexRangeError, match=r"LSTM 'lstm': sequence lengths must lie in \[0, 4\]"):
        gc.run(loaded, {**feeds, "n": np.array([5, 1], np.int32)})
