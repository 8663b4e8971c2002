"""Export, then import: the graph gc.onnx.load rebuilds from a file gc.onnx.save wrote computes what
the original computes, for the example models (MLP, CNN) and for every op's small graph."""

import numpy as np
import pytest
from test_export import example, perturbed
from test_export_ops import CASES

import graphc as gc
from graphc import nn
from graphc.datasets import load_digits

# ops whose export the importer does not read back yet (the ONNX op type it lacks, or why); a case
# that starts to round-trip fails test_op_round_trips until it is taken off this list
IMPORT_GAPS = {
    "shape_size": "ReduceProd",
    "sequence_mask": "Range to a symbolic length",
}


@pytest.mark.parametrize("name", ["mlp_digits", "cnn_digits"])
def test_example_model_round_trips(name, tmp_path):
    model = perturbed(example(name).build())
    x = load_digits(flat=name == "mlp_digits")[0][:16].astype("float32")
    path = gc.onnx.save(model, tmp_path / f"{name}.onnx")
    g = gc.onnx.load(path)
    assert sorted(g.inputs) == ["x"] and list(g.outputs) == ["output", "predictions"]
    assert {k: v.shape for k, v in g.values.items()} == {k: model.graph.values[k].shape for k in g.values}
    assert set(g.values) == {k for k in model.graph.params if k.startswith(name.split("_")[0] + "/")}
    want = gc.run(model.graph, {"x": x}, outputs=["eval/output", "eval/predictions"])
    got = gc.run(g, {"x": x})
    np.testing.assert_allclose(got["output"], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["predictions"], want[1], rtol=1e-5, atol=1e-7)
    compiled = gc.compile(g, "numba")(x=x)  # the imported graph compiles like any graphc graph
    np.testing.assert_allclose(compiled["output"], want[0], rtol=1e-4, atol=1e-5)
    # the layers' scopes survive as the imported nodes' scopes (drawings read like the source model)
    assert {n.scope.split("/")[1] for n in g.nodes if n.scope.count("/")} >= {"dense", "dense_1"}


@pytest.mark.parametrize(
    "layers",
    [
        lambda: [nn.LSTM(5), nn.Dense(3)],
        lambda: [nn.GRU(4, return_sequences=True, bidirectional=True), nn.SimpleRNN(3), nn.Dense(2)],
    ],
    ids=["lstm", "bidirectional_gru_rnn"],
)
def test_recurrent_model_round_trips(layers):
    model = perturbed(nn.Model(nn.Sequential(layers()), input_shape=(6, 4), backend="reference"))
    x = np.random.default_rng(2).standard_normal((3, 6, 4)).astype("float32")
    g = gc.onnx.load(gc.onnx.to_onnx(model))
    assert sum(n.op == "scan" for n in g.nodes) == sum(
        n.op == "scan" for n in model.graph.live_nodes([model.graph.outputs["eval/output"]])
    )
    (want,) = gc.run(model.graph, {"x": x}, outputs=["eval/output"])
    np.testing.assert_allclose(gc.run(g, {"x": x})["output"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_op_round_trips(case):
    g = gc.Graph(case.split(" ")[0])
    with g:
        feeds = CASES[case](g)
    model = gc.onnx.to_onnx(g)
    if case in IMPORT_GAPS:
        with pytest.raises(gc.GraphFileError):
            gc.onnx.load(model)
        return
    h = gc.onnx.load(model)
    want, got = gc.run(g, feeds), gc.run(h, feeds)
    assert set(got) == set(want)
    for k, w in want.items():
        assert got[k].dtype == w.dtype and got[k].shape == w.shape, k
        np.testing.assert_allclose(got[k], w, rtol=1e-5, atol=1e-6, err_msg=k)
