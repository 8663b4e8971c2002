"""The curves plot (issue 10, item 21: no fractional epoch ticks)."""

import numpy as np
import pytest

from graphc.nn.history import History, history_figure


@pytest.mark.parametrize("epochs", [2, 3, 7])
def test_epoch_ticks_are_whole_numbers(epochs):
    h = History()
    for e in range(1, epochs + 1):
        h.append(e, {"loss": 1.0 / e, "val_loss": 1.2 / e})
    fig = history_figure({"": h})
    (ax,) = fig.axes
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert len(ticks) >= 2
    np.testing.assert_array_equal(ticks, np.round(ticks))
    assert ax.get_xlabel() == "epoch"
