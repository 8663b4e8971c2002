"""Losses and metrics for training graphs.

The losses are the core ops (graphc/ops/losses.py, declared once there): each takes
`reduction="mean" | "sum" | "none"` and checks its arguments when declared, with errors
naming the loss, the shapes and the user's line. Metrics are graph nodes too.
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
