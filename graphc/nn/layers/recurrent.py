"""Recurrent layers: SimpleRNN, LSTM and GRU over batch-first (batch, time, features) input.

Each layer transposes its input to time-major, projects every step's input in one product,
and runs its cell (graphc.nn.layers.recurrent_cells) under one `gc.scan` per layer and
direction; its gradient is a reverse scan (backpropagation through time). Stacked layers
(`num_layers`) feed each layer's sequence to the next, with dropout between them while training;
`bidirectional` runs a second scan from the end and joins the two along the features.

    y = nn.LSTM(64)(x)                                   # (batch, 64): the last step's h
    ys, (h, c) = nn.LSTM(64, return_sequences=True, return_state=True)(x, initial_state=(h0, c0))
    with nn.sequence_lengths(lengths):                   # padded batches (nn/layers/sequence.py)
        y = nn.GRU(32, bidirectional=True)(x)

State: for one layer and direction, h (and c) of shape (batch, units); otherwise stacked as
(num_layers * directions, batch, units), layer-major, the forward direction first (PyTorch's
h_n layout). `initial_state` takes that form (a node, or the pair (h, c) for LSTM; zeros if
not given), and return_state=True returns `(output, state)` with the final state in it.
"""

import zlib

import numpy as np

from graphc.errors import AttributeValueError, GraphStructureError, ShapeError, where
from graphc.ir import shapes
from graphc.ir.location import user_location
from graphc.ir.node import Node
from graphc.nn.layers.base import Layer, check_int, get_activation
from graphc.nn.layers.dense import check_init
from graphc.nn.layers.recurrent_cells import CELLS, lstm_bias, orthogonal
from graphc.nn.layers.sequence import checked_lengths, current_lengths, step_mask
from graphc.ops import api as F
from graphc.ops.registry import constant, error

__all__ = ["Recurrent", "SimpleRNN", "LSTM", "GRU"]


class Recurrent(Layer):
    """The common part of SimpleRNN, LSTM and GRU (see the module docstring).

    return_sequences: every step's output (batch, time, D*units), else the last (batch, D*units);
    return_state: the call returns (output, final state); num_layers: stacked layers; dropout:
    on the sequence between stacked layers while training (masks seeded by `seed`, default
    derived from the graph seed and the scope); bidirectional: D = 2; init / recurrent_init /
    bias_init: initializers of w_ih, w_hh ("orthogonal": each gate block orthogonal) and the
    biases; dtype: the parameters' (default: the input's float dtype). `weights[(layer,
    direction)]` maps "w_ih", "w_hh", "b_in" (and the GRU's "b_hh") to the parameter nodes.
    """

    cell_kind = ""

    def __init__(
        self,
        units: int,
        return_sequences: bool = False,
        return_state: bool = False,
        num_layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        init="glorot_uniform",
        recurrent_init="orthogonal",
        bias_init="zeros",
        dtype: str | None = None,
        seed: int | None = None,
        name: str | None = None,
    ):
        owner = type(self).__name__
        self.cell = CELLS[self.cell_kind]
        self.units = check_int(owner, "units", units)
        self.num_layers = check_int(owner, "num_layers", num_layers)
        for what, flag in (("return_sequences", return_sequences), ("return_state", return_state)):
            if not isinstance(flag, bool):
                error(AttributeValueError, owner, f"{what} must be True or False, got {flag!r}")
        if not isinstance(bidirectional, bool):
            error(AttributeValueError, owner, f"bidirectional must be True or False, got {bidirectional!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            error(AttributeValueError, owner, f"dropout must be a probability in [0, 1), got {dropout!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            error(AttributeValueError, owner, f"seed must be a non-negative int or None, got {seed!r}")
        self.return_sequences, self.return_state = return_sequences, return_state
        self.bidirectional, self.dropout, self.seed = bidirectional, float(dropout), seed
        self.init = check_init(owner, "init", init)
        self.recurrent_init = (
            orthogonal if recurrent_init == "orthogonal" else check_init(owner, "recurrent_init", recurrent_init)
        )
        self.bias_init = check_init(owner, "bias_init", bias_init)
        self.dtype = dtype
        self.weights: dict[tuple[int, int], dict[str, Node]] = {}  # (layer, direction) -> name -> param
        self._extra = None  # (initial_state, lengths) of the call in progress
        super().__init__(name)

    # -- layout -------------------------------------------------------------------------------
    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        """The parameters' name suffix, as in PyTorch's state dicts: `_l0`, `_l0_reverse`, `_l1`..."""
        return f"_l{layer}" + ("_reverse" if direction else "")

    def input_bias_init(self):
        return self.bias_init

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, x, training: bool = False, initial_state=None, lengths=None):
        """`initial_state`: the state to start from (zeros if None); `lengths`: an int node
        (batch,) of valid steps per row (default: the enclosing nn.sequence_lengths block's)."""
        self._extra = (initial_state, lengths)
        try:
            return super().__call__(x, training)
        finally:
            self._extra = None

    def signature(self, x):
        return (x.shape[-1] if x.ndim else None, x.dtype)

    def _mismatch(self, sig):
        return f" ({self._signature[0]} input features expected)"

    def build(self, x):
        features = self.need_concrete(x, -1, "feature size")
        dtype = self.float_dtype(x, self.dtype)
        h, gh = self.units, self.cell.gates * self.units
        if self.seed is None:
            self.seed = (self.graph.seed * 1_000_003 + zlib.crc32(self.scope.encode())) % (2**31)
        for k in range(self.num_layers):
            n_in = features if k == 0 else h * self.directions
            for d in range(self.directions):
                s = self.suffix(k, d)
                w = {
                    "w_ih": self.add_param("w_ih" + s, (n_in, gh), self.init, dtype),
                    "w_hh": self.add_param("w_hh" + s, (h, gh), self.recurrent_init, dtype),
                    "b_in": self.add_param(self.cell.input_bias + s, (gh,), self.input_bias_init(), dtype),
                }
                if self.cell.recurrent_bias:
                    w["b_hh"] = self.add_param(self.cell.recurrent_bias + s, (gh,), self.bias_init, dtype)
                self.weights[(k, d)] = w

    def _unbuild(self):
        super()._unbuild()
        self.weights = {}

    def _check_input(self, x):
        x = super()._check_input(x)
        self.need_rank(x, (3,), "a (batch, time, features)")  # before the signature check, whose message misleads
        return x

    def forward(self, x, training):
        initial_state, lengths = self._extra or (None, None)
        lengths = current_lengths() if lengths is None else lengths
        mask = None
        if lengths is not None:
            mask = step_mask(self._what(), checked_lengths(self._what(), lengths, x), x)
        dtype = self.weights[(0, 0)]["w_ih"].dtype
        states = self._initial_states(initial_state, x, dtype)
        seq = F.transpose(F.cast(x, dtype), (1, 0, 2))  # (time, batch, features)
        finals = []
        for k in range(self.num_layers):
            if k and training and self.dropout:
                seq = F.dropout(seq, self.dropout, seed=(self.seed + k) % (2**31), training=True)
            keep = k < self.num_layers - 1 or self.return_sequences
            outs = []
            for d in range(self.directions):
                final, ys = self._scan(k, d, seq, mask, states[k * self.directions + d], keep)
                finals.append(final)
                outs.append(ys)
            if keep:
                seq = outs[0] if len(outs) == 1 else F.concat(outs, axis=2)
        if self.return_sequences:
            out = F.transpose(seq, (1, 0, 2))
        else:
            last = [f[0] for f in finals[-self.directions :]]
            out = last[0] if len(last) == 1 else F.concat(last, axis=1)
        if not self.return_state:
            return out
        return out, self._state_out(finals)

    def _scan(self, k, d, seq, mask, state, keep):
        """One layer and direction: (final state leaves, time-major outputs or None)."""
        w, cell = self.weights[(k, d)], self.cell
        act = getattr(self, "activation_fn", None)
        gx = F.matmul(seq, w["w_ih"]) + w["b_in"]  # every step's input projection, one product
        b_hh = w.get("b_hh")

        def body(carry, xs):
            gx_t, m = (xs, None) if mask is None else xs
            new, h = cell.step(carry, gx_t, w["w_hh"], b_hh, act)
            if m is not None:  # padded steps keep the state and give zeros
                new = tuple(F.where(m, a, b) for a, b in zip(new, carry))
                h = F.where(m, h, F.zeros_like(h))
            return new, (h if keep else None)

        final, ys = F.scan(body, tuple(state), gx if mask is None else (gx, mask), reverse=bool(d))
        return final, ys

    # -- state in and out ---------------------------------------------------------------------
    def _initial_states(self, given, x, dtype):
        """Per (layer, direction), the tuple of state leaves to start from."""
        n, names = self.num_layers * self.directions, self.cell.states
        batch, h = x.shape[0], self.units
        if given is None:
            zero = F.broadcast_to(constant(np.zeros(h, dtype), dtype, graph=x.graph), (batch, h))
            return [(zero,) * len(names)] * n
        if len(names) == 1:
            leaves = [given]
        elif isinstance(given, tuple | list) and len(given) == len(names):
            leaves = list(given)
        else:
            raise GraphStructureError(
                f"{self._what()}: initial_state must be a pair of nodes (h, c), got {_describe(given)}"
                + where(user_location())
            )
        want = (batch, h) if n == 1 else (n, batch, h)
        for name, leaf in zip(names, leaves):
            if not isinstance(leaf, Node):
                raise GraphStructureError(
                    f"{self._what()}: initial state {name} must be a graph node, got {_describe(leaf)}"
                    + where(user_location())
                )
            if leaf.is_tuple or leaf.shape != want or leaf.dtype != dtype:
                layout = "(batch, units)" if n == 1 else "(num_layers * directions, batch, units)"
                raise ShapeError(
                    f"{self._what()}: initial state {name} must be {layout} = {shapes.fmt(want)} {dtype} for "
                    f"the input {x.type_str}, got {leaf.type_str}" + where(user_location())
                )
        if n == 1:
            return [tuple(leaves)]
        return [tuple(leaf[i] for leaf in leaves) for i in range(n)]

    def _state_out(self, finals):
        leaves = list(zip(*finals))  # per state name, the (layer, direction) finals in order
        if len(finals) > 1:
            leaves = [F.stack(list(per), axis=0) for per in leaves]
        else:
            leaves = [per[0] for per in leaves]
        return leaves[0] if len(leaves) == 1 else tuple(leaves)


def _describe(v) -> str:
    if isinstance(v, Node):
        return f"node {v.label}: {v.type_str}"
    if isinstance(v, tuple | list):
        return f"a {type(v).__name__} of {len(v)}"
    return f"{type(v).__name__} {v!r:.60}"


class SimpleRNN(Recurrent):
    """h_t = activation(x_t @ w_ih + b + h_{t-1} @ w_hh): activation "tanh" (default) or "relu".

    Parameters per layer k (and `_reverse` direction): w_ih_l{k} (in, units), w_hh_l{k}
    (units, units), b_l{k} (units,) (PyTorch's bias_ih + bias_hh). Options as in Recurrent:
    return_sequences, return_state, num_layers, dropout (between layers), bidirectional.
    """

    cell_kind = "rnn"

    def __init__(self, units: int, activation="tanh", **kw):
        if activation not in ("tanh", "relu"):
            error(AttributeValueError, "SimpleRNN", f"activation must be 'tanh' or 'relu', got {activation!r}")
        self.activation = activation
        self.activation_fn = get_activation(activation, "SimpleRNN")
        super().__init__(units, **kw)


class LSTM(Recurrent):
    """Long short-term memory: gates i, f, g, o (input, forget, cell, output; PyTorch's order).

    Parameters per layer k (and `_reverse` direction): w_ih_l{k} (in, 4 units), w_hh_l{k}
    (units, 4 units) and b_l{k} (4 units,) (PyTorch's bias_ih + bias_hh), the four gate blocks
    side by side in that order. unit_forget_bias=True (default) starts the forget gate's bias at 1.
    The state is the pair (h, c).
    """

    cell_kind = "lstm"

    def __init__(self, units: int, unit_forget_bias: bool = True, **kw):
        if not isinstance(unit_forget_bias, bool):
            error(AttributeValueError, "LSTM", f"unit_forget_bias must be True or False, got {unit_forget_bias!r}")
        self.unit_forget_bias = unit_forget_bias
        super().__init__(units, **kw)

    def input_bias_init(self):
        return lstm_bias if self.unit_forget_bias and self.bias_init == "zeros" else self.bias_init


class GRU(Recurrent):
    """Gated recurrent unit: gates r, z, n (reset, update, new; PyTorch's order), the reset
    gate applied after the recurrent product: n = tanh(x W_in + b_in + r * (h W_hn + b_hn)).

    Parameters per layer k (and `_reverse` direction): w_ih_l{k} (in, 3 units), w_hh_l{k}
    (units, 3 units), b_ih_l{k} and b_hh_l{k} (3 units,): PyTorch's weights transposed, biases as is.
    """

    cell_kind = "gru"
