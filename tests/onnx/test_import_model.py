"""gc.onnx.load of whole models: initializers as parameters (trainable or frozen) or folded constants,
node names as scopes, an opset-7 model of the kind the model zoo holds, inputs and outputs by name."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import graphc as gc

RNG = np.random.default_rng(4)


def _zoo_like_model(opset=7):
    """Conv -> BatchNorm -> Relu -> MaxPool -> Dropout -> Reshape (shape initializer) -> Gemm -> Softmax,
    with PyTorch-style node names."""
    inits = {
        "conv.w": RNG.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
        "conv.b": RNG.standard_normal(4).astype(np.float32),
        "bn.scale": RNG.standard_normal(4).astype(np.float32),
        "bn.bias": RNG.standard_normal(4).astype(np.float32),
        "bn.mean": RNG.standard_normal(4).astype(np.float32),
        "bn.var": np.abs(RNG.standard_normal(4)).astype(np.float32) + 0.5,
        "flat.shape": np.array([0, -1], np.int64),
        "fc.w": RNG.standard_normal((5, 16)).astype(np.float32) * 0.3,
        "fc.b": RNG.standard_normal(5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="/features/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], name="/features/bn1/BN"
        ),
        helper.make_node("Relu", ["bn"], ["r"], name="/features/relu/Relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="/features/pool/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["p"], ["d"], name="/classifier/drop/Dropout", ratio=0.5),
        helper.make_node("Reshape", ["d", "flat.shape"], ["f"], name="/classifier/Reshape"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="/classifier/fc/Gemm", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="/classifier/Softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "zoo_net",
        [helper.make_tensor_value_info("x", T.FLOAT, ["batch_size", 3, 4, 4])],
        [
            helper.make_tensor_value_info("probs", T.FLOAT, ["batch_size", 5]),
            helper.make_tensor_value_info("logits", T.FLOAT, ["batch_size", 5]),
        ],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), inits


def test_an_opset_7_model_agrees_with_onnxruntime(tmp_path):
    model, inits = _zoo_like_model()
    path = tmp_path / "zoo.onnx"
    onnx.save(model, path)
    g = gc.onnx.load(path)
    assert g.name == "zoo_net" and list(g.inputs) == ["x"] and list(g.outputs) == ["probs", "logits"]
    assert g.inputs["x"].shape == ("batch_size", 3, 4, 4)
    x = RNG.standard_normal((3, 3, 4, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})
    got = gc.compile(g, "reference")({"x": x})
    np.testing.assert_allclose(got["probs"], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["logits"], want[1], rtol=1e-5, atol=1e-5)


def test_initializers_become_parameters_or_folded_constants():
    model, inits = _zoo_like_model()
    g = gc.onnx.load(model)
    floats = {k for k, v in inits.items() if v.dtype.kind == "f"}
    assert set(g.params) == floats  # the int64 shape folded into the reshape
    for k in floats:
        np.testing.assert_array_equal(g.values[k], inits[k])
    assert set(g.trainable()) == floats
    assert gc.onnx.load(model, trainable=False).trainable() == {}
    frozen = gc.onnx.load(model, trainable={"fc.w", "fc.b"})
    assert set(frozen.trainable()) == {"fc.w", "fc.b"} and set(frozen.params) == floats


def test_node_names_are_scopes():
    model, _ = _zoo_like_model()
    g = gc.onnx.load(model)
    scopes = {n.op: n.scope for n in g.live_nodes() if not n.is_source}
    assert scopes["conv2d"] == "features/conv1/Conv"
    assert scopes["relu"] == "features/relu/Relu"
    assert scopes["max_pool2d"] == "features/pool/MaxPool"
    assert scopes["matmul"] == "classifier/fc/Gemm"
    assert scopes["softmax"] == "classifier/Softmax"
    assert "# features/bn1/BN" in g.text()
    unnamed = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", T.FLOAT, [2])],
            [helper.make_tensor_value_info("y", T.FLOAT, [2])],
        ),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    assert [n.scope for n in gc.onnx.load(unnamed).nodes if n.op == "relu"] == ["Relu_0", "Relu_1"]


def test_an_imported_model_trains_its_trainable_parameters():
    model, _ = _zoo_like_model(opset=13)
    g = gc.onnx.load(model, trainable={"fc.w", "fc.b"})
    with g:
        y = g.input("y", ("batch_size",), "int64")
        g.output("loss", gc.cross_entropy(g.outputs["logits"], y))
    before = {k: v.copy() for k, v in g.values.items()}
    gc.nn.training_graph(g.outputs["loss"], gc.optim.SGD(0.1))
    step = gc.compile(g, "reference")
    step({"x": RNG.standard_normal((4, 3, 4, 4)).astype(np.float32), "y": np.array([0, 1, 2, 3])})
    changed = {k for k in before if not np.array_equal(before[k], g.values[k])}
    assert changed == {"fc.w", "fc.b"}
