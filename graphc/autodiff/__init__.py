"""Symbolic reverse-mode differentiation."""

from graphc.autodiff.grad import grad, gradients  # noqa: F401
