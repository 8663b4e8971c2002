"""examples/onnx_finetune.py in a short run: a model exported to ONNX, imported with its first layer
frozen, a new head added and trained on all ten digits reaches a stated accuracy, and the frozen
initializers do not move."""

import importlib.util
from pathlib import Path

import numpy as np
import onnx

import graphc as gc

ROOT = Path(__file__).resolve().parents[2]


def example():
    spec = importlib.util.spec_from_file_location("example_onnx_finetune", ROOT / "examples" / "onnx_finetune.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_finetuning_an_imported_model_reaches_its_accuracy(tmp_path, capsys):
    path = tmp_path / "pre.onnx"
    args = ["--pretrain-epochs", "4", "--epochs", "4", "--backend", "reference", "--quiet", "--onnx", str(path)]
    r = example().main(args)
    assert r["frozen"] == ["features/dense/b", "features/dense/w", "head/b", "head/w"]
    assert r["trained"] == ["features/dense_1/b", "features/dense_1/w", "new_head/b", "new_head/w"]
    assert r["pretrained_accuracy"] >= 0.95  # digits 0-4 (0.97 in this run)
    assert r["accuracy"] >= 0.85  # all ten digits after 4 epochs (0.90 in this run; the full run: >= 0.93)
    assert capsys.readouterr().out.splitlines()[-1] == f"test accuracy (all ten digits): {r['accuracy']:.4f}"
    # the frozen layer keeps the exported initializers; the unfrozen one trained away from them
    exported = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    g = r["graph"]
    np.testing.assert_array_equal(g.values["features/dense/w"], exported["features/dense/w"])
    assert not np.array_equal(g.values["features/dense_1/w"], exported["features/dense_1/w"])
    assert g.params["features/dense/w"].role == "state" and g.params["features/dense_1/w"].role == "param"


def test_build_gives_the_finetuning_graph():
    g = example().build()
    assert {"x", "y"} <= set(g.inputs) and {"features", "new_logits", "loss"} <= set(g.outputs)
    assert sorted(k for k, p in g.params.items() if p.attrs["trainable"]) == [
        "features/dense_1/b",
        "features/dense_1/w",
        "new_head/b",
        "new_head/w",
    ]
    assert isinstance(g, gc.Graph) and g.updates  # the training step: gradients and Adam's updates
