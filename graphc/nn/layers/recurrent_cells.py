"""The recurrent cells' equations, one step each, and their weights' layout and initializers.

Every cell keeps, per layer and direction, an input kernel `w_ih` (in, G*units), a recurrent
kernel `w_hh` (units, G*units) and biases, with the G gate blocks side by side along the last
axis in PyTorch's order, so `x_t @ w_ih` is PyTorch's `x_t @ weight_ih.T`:

    SimpleRNN  G=1  h' = act(x W_ih + b + h W_hh)                              bias b (units,)
    LSTM       G=4  i, f, g, o = split(x W_ih + b + h W_hh)                    bias b (4 units,)
                    c' = sigmoid(f) c + sigmoid(i) tanh(g);  h' = sigmoid(o) tanh(c')
    GRU        G=3  r, z, n blocks of  gx = x W_ih + b_ih  and  gh = h W_hh + b_hh
                    r = sigmoid(gx_r + gh_r);  z = sigmoid(gx_z + gh_z)
                    n = tanh(gx_n + r * gh_n);  h' = (1 - z) n + z h            biases b_ih, b_hh

The GRU applies the reset gate after the recurrent product (PyTorch's and cuDNN's form, Keras'
reset_after=True), which is why it keeps both biases; SimpleRNN and LSTM fold PyTorch's two
biases into one. The input projection `x W_ih + b` of every step is one product before the loop.
"""

from dataclasses import dataclass

import numpy as np

from graphc.ops import api as F

__all__ = ["Cell", "CELLS", "orthogonal", "lstm_bias"]


@dataclass(frozen=True)
class Cell:
    """One kind of recurrent cell: its gate count, its state leaves and its biases' names."""

    kind: str  # "rnn", "lstm" or "gru"
    gates: int
    states: tuple[str, ...]  # the carried state, in order: ("h",) or ("h", "c")
    input_bias: str  # the bias added to the input projection (outside the loop)
    recurrent_bias: str | None  # the bias added to h @ w_hh inside the loop (GRU only)

    def step(self, state, gx, w_hh, b_hh, activation):
        """(new state leaves, output h) of one step; `gx` is x_t @ w_ih + input bias."""
        h = state[0]
        if self.kind == "rnn":
            h = activation(gx + F.matmul(h, w_hh))
            return (h,), h
        if self.kind == "lstm":
            i, f, g, o = F.split(gx + F.matmul(h, w_hh), 4, axis=1)
            c = F.sigmoid(f) * state[1] + F.sigmoid(i) * F.tanh(g)
            h = F.sigmoid(o) * F.tanh(c)
            return (h, c), h
        xr, xz, xn = F.split(gx, 3, axis=1)
        hr, hz, hn = F.split(F.matmul(h, w_hh) + b_hh, 3, axis=1)
        r, z = F.sigmoid(xr + hr), F.sigmoid(xz + hz)
        n = F.tanh(xn + r * hn)
        h = n + z * (h - n)
        return (h,), h


CELLS = {
    "rnn": Cell("rnn", 1, ("h",), "b", None),
    "lstm": Cell("lstm", 4, ("h", "c"), "b", None),
    "gru": Cell("gru", 3, ("h",), "b_ih", "b_hh"),
}


def orthogonal(shape, rng):
    """Recurrent kernels (units, G*units): each gate's (units, units) block an orthogonal matrix,
    so repeated products neither grow nor shrink the state at the start of training."""
    units, width = shape
    blocks = []
    for _ in range(width // units):
        q, r = np.linalg.qr(rng.standard_normal((units, units)))
        blocks.append(q * np.sign(np.diag(r)))  # the sign fix makes q uniformly distributed
    return np.concatenate(blocks, axis=1)


def lstm_bias(shape, rng):
    """LSTM bias: zeros, with the forget gate's block (the second of four) set to 1, so the cell
    remembers by default early in training (Jozefowicz et al., 2015)."""
    b = np.zeros(shape)
    units = shape[0] // 4
    b[units : 2 * units] = 1.0
    return b


orthogonal.__name__ = "orthogonal"
lstm_bias.__name__ = "unit_forget_bias"
