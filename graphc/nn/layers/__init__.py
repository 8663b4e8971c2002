"""Layers: callables that add graph pieces with named, scoped parameters (see base.Layer)."""

from graphc.nn.layers.base import ACTIVATIONS, Activation, Lambda, Layer, Sequential, get_activation
from graphc.nn.layers.conv import AvgPool2D, Conv2D, MaxPool2D
from graphc.nn.layers.dense import Dense, Dropout, Flatten, dense
from graphc.nn.layers.embedding import Embedding
from graphc.nn.layers.layernorm import LayerNorm
from graphc.nn.layers.norm import BatchNorm
from graphc.nn.layers.recurrent import GRU, LSTM, SimpleRNN
from graphc.nn.layers.sequence import current_lengths, sequence_lengths
from graphc.nn.layers.torch_layout import load_torch_weights, torch_state_dict

BatchNorm1D = BatchNorm2D = BatchNorm

__all__ = [
    "Layer",
    "Sequential",
    "Activation",
    "Lambda",
    "get_activation",
    "ACTIVATIONS",
    "Dense",
    "dense",
    "Flatten",
    "Dropout",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "BatchNorm",
    "BatchNorm1D",
    "BatchNorm2D",
    "Embedding",
    "LayerNorm",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "sequence_lengths",
    "current_lengths",
    "load_torch_weights",
    "torch_state_dict",
]
