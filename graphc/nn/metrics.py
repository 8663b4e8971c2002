"""Metrics (graph nodes): accuracy for class logits, binary_accuracy for single scores."""

from graphc.nn.losses import accuracy, binary_accuracy

__all__ = ["accuracy", "binary_accuracy"]
