"""Neural networks as graphs: layers, losses and metrics, optimizers, schedules, training graphs.

from graphc import nn
net = nn.Sequential([nn.Dense(64, activation="relu"), nn.Dense(10)])
with gc.Graph("mlp") as g:
    x, y = g.input("x", ("batch", 64)), g.input("y", ("batch",), "int64")
    loss = nn.losses.cross_entropy(net(x, training=True), y)
tg = nn.training_graph(loss, nn.optim.Adam(1e-3))
"""

from graphc.nn import layers, losses, metrics, optim, schedules
from graphc.nn.early_stopping import EarlyStopping
from graphc.nn.generation import Stepper, generate
from graphc.nn.layers import *  # noqa: F403  (the layers, listed once in layers.__all__)
from graphc.nn.losses import accuracy, binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, mse
from graphc.nn.model import Model, TrainingError
from graphc.nn.optim import GD, SGD, Adam, AdamW, Optimizer, RMSprop
from graphc.nn.training import TrainingGraph, training_graph

__all__ = [
    "losses",
    "metrics",
    "optim",
    "schedules",
    *layers.__all__,
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "mse",
    "accuracy",
    "Optimizer",
    "GD",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "TrainingGraph",
    "training_graph",
]
__all__ += ["Model", "EarlyStopping", "TrainingError"]  # the training loop (nn/model.py)
__all__ += ["generate", "Stepper"]  # generation from stateful sequence models (nn/generation.py)
