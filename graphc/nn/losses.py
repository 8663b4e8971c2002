"""Losses and metrics for training graphs.

The losses are the core ops (graphc/ops/losses.py, declared once there): each takes
`reduction="mean" | "sum" | "none"` and checks its arguments when declared, with errors
naming the loss, the shapes and the user's line. Metrics are graph nodes too.

The sequence losses and metric take per-step outputs (batch, time, ...) and the sequences'
lengths (an int node of shape (batch,), or None for full sequences): padded steps
(t >= lengths[b]) count neither in the sum nor in the number of steps the mean divides by, and
their targets are not read (they may hold anything, -1 for instance).
"""

from graphc.errors import DTypeError, ShapeError
from graphc.ir import dtypes, shapes
from graphc.ir.node import Node
from graphc.ops import api as F
from graphc.ops.losses import binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, entropy, mse
from graphc.ops.registry import error

__all__ = [
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse",
    "entropy",
    "accuracy",
    "binary_accuracy",
    "sequence_cross_entropy",
    "sequence_mse",
    "sequence_accuracy",
    "REDUCTIONS",
]

REDUCTIONS = ("mean", "sum", "none")


# -- metrics ----------------------------------------------------------------------------------
def accuracy(logits: Node, labels: Node) -> Node:
    """Fraction of examples whose highest logit is the label (a float32 scalar).

    labels: integer classes of shape logits.shape[:-1], or one-hot/probabilities of the
    logits' shape. For one logit per example ((batch,) or (batch, 1)) see binary_accuracy.
    """
    if not isinstance(logits, Node) or not isinstance(labels, Node):
        error(DTypeError, "accuracy", "logits and labels must be graph nodes")
    if logits.ndim < 1:
        error(ShapeError, "accuracy", f"logits need a class axis, got {logits.type_str}")
    if labels.shape == logits.shape and dtypes.is_float(labels.dtype):
        labels = F.argmax(labels, -1)
    if labels.shape != logits.shape[:-1] or not dtypes.is_int(labels.dtype):
        error(
            ShapeError,
            "accuracy",
            f"labels {labels.type_str} must be integer classes of shape {shapes.fmt(logits.shape[:-1])} "
            f"or one-hot of shape {shapes.fmt(logits.shape)} (logits {logits.type_str})",
        )
    pred = F.argmax(logits, -1)
    return F.mean(F.cast(F.equal(pred, F.cast(labels, "int64")), "float32"))


def binary_accuracy(scores: Node, labels: Node, threshold: float = 0.0) -> Node:
    """Fraction of examples where (score > threshold) equals the 0/1 label (threshold 0 for logits)."""
    if not isinstance(scores, Node) or not isinstance(labels, Node):
        error(DTypeError, "binary_accuracy", "scores and labels must be graph nodes")
    if labels.shape != scores.shape:
        error(ShapeError, "binary_accuracy", f"labels {labels.type_str} do not match scores {scores.type_str}")
    pred = F.greater(scores, threshold)
    truth = F.greater(F.cast(labels, scores.dtype), 0.5)
    return F.mean(F.cast(F.equal(pred, truth), "float32"))


# -- per-step losses over padded sequences ------------------------------------------------------
def _steps(op: str, out, target, lengths, target_rank: int, min_rank: int = 3):
    """The float mask (batch, time) of valid steps (None without lengths), after checking shapes."""
    if not isinstance(out, Node) or not isinstance(target, Node):
        error(DTypeError, op, "outputs and targets must be graph nodes")
    if out.ndim < min_rank or not dtypes.is_float(out.dtype):
        layout = "(batch, time, ...)" if min_rank == 2 else "(batch, time, classes)"
        error(ShapeError, op, f"needs float per-step outputs {layout}, got {getattr(out, 'type_str', out)}")
    want = out.shape[:target_rank]
    if target.shape != want:
        error(ShapeError, op, f"targets {target.type_str} do not match the outputs {out.type_str}: need shape "
                              f"{shapes.fmt(want)}")  # fmt: skip
    if lengths is None:
        return None
    if not isinstance(lengths, Node) or lengths.ndim != 1 or not dtypes.is_int(lengths.dtype):
        got = getattr(lengths, "type_str", repr(lengths))
        error(DTypeError, op, f"lengths must be an int node of shape (batch,), got {got}")
    if lengths.shape[0] != out.shape[0]:
        error(ShapeError, op, f"lengths {lengths.type_str} do not match the batch of the outputs {out.type_str}")
    return F.sequence_mask(lengths, out.shape[1], dtype=out.dtype, caller=op)


def _masked_mean(per, mask):
    """sum(per * mask) / valid steps, for per (batch, time); 0 when no step is valid."""
    if mask is None:
        return F.mean(per)
    return F.sum(per * mask) / F.maximum(F.sum(mask), 1.0)


def sequence_cross_entropy(logits: Node, labels: Node, lengths: Node | None = None) -> Node:
    """Mean cross-entropy over the valid steps: logits (batch, time, classes), labels (batch, time)."""
    op = "sequence_cross_entropy"
    mask = _steps(op, logits, labels, lengths, 2)
    if not dtypes.is_int(labels.dtype):
        error(DTypeError, op, f"labels must be integer classes, got {labels.type_str}")
    if mask is not None:  # a padded step's label is never read: 0 is in range, and masked out
        labels = F.where(F.cast(mask, "bool"), labels, 0)
    return _masked_mean(cross_entropy(logits, labels, reduction="none"), mask)


def sequence_mse(pred: Node, target: Node, lengths: Node | None = None) -> Node:
    """Mean squared error over the valid steps (and every feature of a step): pred and target
    (batch, time) or (batch, time, ...), of one shape."""
    op = "sequence_mse"
    mask = _steps(op, pred, target, lengths, pred.ndim if isinstance(pred, Node) else 0, min_rank=2)
    target = F.cast(target, pred.dtype)
    if mask is not None:  # a padded step's target is never read (a NaN there stays out of the sum)
        valid = F.cast(mask, "bool")
        for _ in range(pred.ndim - 2):
            valid = F.expand_dims(valid, -1)
        target = F.where(valid, target, 0.0)
    d = pred - target
    return _masked_mean(F.mean(d * d, tuple(range(2, pred.ndim))) if pred.ndim > 2 else d * d, mask)


def sequence_accuracy(logits: Node, labels: Node, lengths: Node | None = None) -> Node:
    """Fraction of the valid steps whose highest logit is the label (a float32 scalar)."""
    op = "sequence_accuracy"
    mask = _steps(op, logits, labels, lengths, 2)
    hit = F.cast(F.equal(F.argmax(logits, -1), F.cast(labels, "int64")), logits.dtype)
    return F.cast(_masked_mean(hit, mask), "float32")
