"""The LSTM cell the backend tests scan with: gates packed (i, f, o, z) in one product."""

import graphc as gc


def lstm_cell(w, u, stack_h: bool = True):
    """cell((h, c), x) -> ((h, c), h or None): x @ w + h @ u split into four gates."""

    def cell(carry, x):
        h, c = carry
        i, f, o, z = gc.split(x @ w + h @ u, 4, axis=1)
        c = gc.sigmoid(f) * c + gc.sigmoid(i) * gc.tanh(z)
        h = gc.sigmoid(o) * gc.tanh(c)
        return (h, c), (h if stack_h else None)

    return cell
