"""The data side of sequence models: lengths, per-step targets, carried state and windows.

`SequenceData(graph)` reads what a Model's graph takes (graphc.nn.model_graph): a `lengths`
input, per-step labels, state inputs. It checks the arrays fit/evaluate/predict get, and runs
a compiled step on a batch: in one call, or, with `bptt=k` on a stateful model, in windows of
k steps (truncated backpropagation through time). A window starts from the final state of the
window before it in the same batch (zeros for the first); the state is fed as an input, so no
gradient flows back into the window before. Each window is one training step (one update).
"""

import numpy as np

from graphc.errors import AttributeValueError, InputError
from graphc.nn.carried_state import STATE
from graphc.nn.data import check_int, check_targets
from graphc.nn.model_graph import LENGTHS, TIME

__all__ = ["SequenceData", "windows"]


def windows(steps: int, bptt: int | None) -> list[tuple[int, int]]:
    """(start, stop) of each window of `bptt` steps (the last may be shorter); one window without bptt."""
    if bptt is None or steps == 0:
        return [(0, steps)]
    return [(s, min(s + bptt, steps)) for s in range(0, steps, bptt)]


class SequenceData:
    """A model graph's sequence inputs, and how to feed a batch through its compiled steps."""

    def __init__(self, graph):
        x, y, out = graph.inputs["x"], graph.inputs["y"], graph.outputs["eval/output"]
        self.has_lengths = LENGTHS in graph.inputs
        self.state = [k for k in graph.inputs if k.startswith(STATE)]
        self._state_types = {k: (graph.inputs[k].shape, graph.inputs[k].dtype) for k in self.state}
        self.time_axis = x.ndim >= 2 and (self.has_lengths or bool(self.state) or x.shape[1] == TIME)
        # per-step labels: a cross-entropy over (batch, time, classes) outputs, labels (batch, time)
        self.per_step = y.dtype.startswith("int") and y.ndim == 2 and out.ndim == 3
        self.along_time = out.ndim >= 2 and x.ndim >= 2 and out.shape[1] == x.shape[1]

    @property
    def stateful(self) -> bool:
        return bool(self.state)

    def state_outputs(self, prefix: str) -> list[str]:
        return [f"{prefix}/{k}" for k in self.state]

    # -- checks -------------------------------------------------------------------------------
    def extra(self, X: np.ndarray, lengths, what: str) -> dict:
        """{"lengths": int32 (N,)} for a model with lengths (full length when not given), else {}."""
        if lengths is None:
            return {LENGTHS: np.full(len(X), X.shape[1], np.int32)} if self.has_lengths else {}
        if not self.has_lengths:
            raise InputError(f"{what}: lengths given, but the model was built without lengths=True (it has no "
                             "lengths input)")  # fmt: skip
        L = np.asarray(lengths)
        if L.dtype.kind not in "iu" or L.shape != (len(X),):
            raise InputError(
                f"{what}: lengths must be integers of shape ({len(X)},) (one per sequence of X {X.shape}), "
                f"got {L.dtype} {L.shape}"
            )
        bad = np.flatnonzero((L < 0) | (L > X.shape[1]))
        if len(bad):
            raise InputError(
                f"{what}: lengths must lie in [0, {X.shape[1]}] (X has {X.shape[1]} steps), got {int(L[bad[0]])} "
                f"at index {int(bad[0])} ({len(bad)} bad value(s))"
            )
        return {LENGTHS: L.astype(np.int32)}

    def _valid(self, X, extra) -> np.ndarray:
        """Bool (N, time): the steps that count."""
        steps = np.arange(X.shape[1])
        if LENGTHS not in extra:
            return np.ones((len(X), X.shape[1]), bool)
        return steps[None, :] < extra[LENGTHS][:, None]

    def labels(self, y, X, extra, num_classes: int, what: str) -> np.ndarray:
        """Per-step labels (N, time) as int64; padded steps may hold anything (they are set to 0)."""
        y = np.asarray(y)
        if y.shape != X.shape[:2]:
            raise InputError(f"{what}: y has shape {y.shape}; the model predicts a class at every step of X "
                             f"{X.shape}, so y must be labels of shape {X.shape[:2]}")  # fmt: skip
        if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.isfinite(y) & (y == np.round(y)))):
            raise InputError(f"{what}: per-step labels must be integers 0..{num_classes - 1}, got dtype {y.dtype}")
        valid = self._valid(X, extra)
        bad = np.argwhere(valid & ((y < 0) | (y >= num_classes)))
        if len(bad):
            pos = tuple(int(i) for i in bad[0])
            raise InputError(
                f"{what}: labels must be in 0..{num_classes - 1} (the model has {num_classes} classes), got "
                f"{y[pos].item()!r} at index {pos} ({len(bad)} bad label(s))"
            )
        return np.where(valid, y, 0).astype(np.int64)

    def targets(self, y, X, target_shape, dtype, what: str) -> np.ndarray:
        """Float targets, the time axis (when there is one) taking X's number of steps."""
        shape = tuple(X.shape[1] if d == TIME else d for d in target_shape)
        return check_targets(y, len(X), shape, dtype, what)

    def check_bptt(self, bptt, op: str, per_step_only: bool = True) -> None:
        if bptt is None:
            return
        check_int(op, "bptt", bptt, 1)
        if not self.stateful:
            raise AttributeValueError(f"{op}: bptt={bptt} needs a model built with stateful=True (its recurrent "
                                      "state is carried from one window to the next)")  # fmt: skip
        if per_step_only and not self.along_time:
            raise AttributeValueError(
                f"{op}: bptt={bptt} needs per-step outputs and targets (batch, time, ...): in a window without the "
                "sequence's end, a model with one output per sequence has nothing to learn from"
            )

    # -- running ------------------------------------------------------------------------------
    def zero_state(self, batch: int) -> dict:
        """Zeros for each state input, for a batch of `batch` sequences."""
        out = {}
        for k, (shape, dtype) in self._state_types.items():
            out[k] = np.zeros([batch if isinstance(d, str) else d for d in shape], dtype)
        return out

    def _windows(self, xb, yb, feeds, bptt):
        """Yield (feeds, weight: the window's valid steps) for each window of the batch."""
        if bptt is None or not self.time_axis:
            yield {"x": xb, **({} if yb is None else {"y": yb}), **feeds}, 1.0
            return
        for start, stop in windows(xb.shape[1], bptt):
            w = {**feeds, "x": xb[:, start:stop]}
            if yb is not None:
                w["y"] = yb[:, start:stop] if self.along_time else yb
            if LENGTHS in feeds:
                w[LENGTHS] = np.clip(feeds[LENGTHS] - start, 0, stop - start).astype(np.int32)
            yield w, float(w[LENGTHS].sum()) if LENGTHS in feeds else float(len(xb) * (stop - start))

    def _run(self, step, xb, yb, feeds, bptt, n):
        """Yield (the first n outputs, the outputs after the state, weight) of each window, the
        state carried from one window to the next (zeros for the first)."""
        state = self.zero_state(len(xb))
        ns = len(self.state)
        for w, weight in self._windows(xb, yb, feeds, bptt):
            outs = step(**w, **state)
            state = dict(zip(self.state, outs[n : n + ns]))
            yield outs[:n], outs[n + ns :], weight

    def run(self, step, xb, yb, feeds: dict, bptt, n: int) -> list[float]:
        """`step`'s n scalar outputs (loss, metrics) on the batch, averaged over its windows by
        their valid steps, then its outputs after the state (a distributed model's global loss).
        A non-finite value stops at once and is returned as it is (the caller's NaN guard reports it)."""
        totals, weights, rest = np.zeros(n), 0.0, []
        for outs, after, weight in self._run(step, xb, yb, feeds, bptt, n):
            vals, rest = [float(v) for v in outs], [float(v) for v in after]
            if not np.isfinite(vals + rest).all():
                return vals + rest
            totals += np.asarray(vals) * weight
            weights += weight
        return [*(totals / weights if weights else totals), *rest]

    def predict(self, step, xb, feeds: dict, bptt, n: int) -> list[np.ndarray]:
        """`step`'s n array outputs on the batch: per-step ones joined along time over the windows,
        others the last window's."""
        parts = [outs for outs, _, _ in self._run(step, xb, None, feeds, bptt, n)]
        if len(parts) == 1 or not self.along_time:
            return list(parts[-1])
        return [np.concatenate([p[i] for p in parts], axis=1) for i in range(n)]
