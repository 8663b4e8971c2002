"""Jupyter display: Graph, compiled steps and Model give an SVG drawing with dot, the text form without."""

import shutil

import pytest

import graphc as gc
from graphc import nn
from tests.viz.dotread import HAVE_DOT


def small_graph():
    with gc.Graph("small") as g:
        x = g.input("x", ("batch", 3))
        w = g.param("w", (3, 2))
        g.output("loss", gc.mean(gc.tanh(x @ w)))
    return g


def small_model():
    return nn.Model(nn.Sequential([nn.Dense(4, activation="relu"), nn.Dense(3)]), input_shape=5,
                    backend="reference", name="tiny")  # fmt: skip


@pytest.mark.parametrize("make", ["graph", "step", "model"])
def test_without_dot_the_text_form(monkeypatch, make):
    obj = {"graph": small_graph, "step": lambda: gc.compile(small_graph(), "numba"), "model": small_model}[make]()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    bundle = obj._repr_mimebundle_()
    assert list(bundle) == ["text/plain"]
    text = bundle["text/plain"]
    if make == "model":
        assert "tiny" in text
    else:
        assert text.startswith("graph small(x: f32[batch,3])") and "tanh" in text


@pytest.mark.skipif(not HAVE_DOT, reason="needs the Graphviz dot program")
@pytest.mark.parametrize("make", ["graph", "step", "model"])
def test_with_dot_an_svg_drawing(make):
    obj = {"graph": small_graph, "step": lambda: gc.compile(small_graph(), "numba"), "model": small_model}[make]()
    bundle = obj._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "image/svg+xml"}
    svg = bundle["image/svg+xml"]
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "legend" in svg
    assert list(obj._repr_mimebundle_(include=["text/plain"])) == ["text/plain"]
    assert "image/svg+xml" not in obj._repr_mimebundle_(exclude=["image/svg+xml"])
