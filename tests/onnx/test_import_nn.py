"""Import rules for Conv, ConvTranspose, Gemm, pooling, normalisation, LRN and softmax, against onnxruntime
(values) on the reference backend, and one model on numba."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphc as gc

RNG = np.random.default_rng(0)


def _model(node, feeds, inits=None, opset=17):
    inits = inits or {}
    inputs = [helper.make_tensor_value_info(k, T.FLOAT, v.shape) for k, v in feeds.items()]
    graph = helper.make_graph(
        [node],
        "t",
        inputs,
        [helper.make_tensor_value_info(o, T.FLOAT, None) for o in node.output],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _agree(model, feeds, backend="reference", rtol=1e-5, atol=1e-6):
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    g = gc.onnx.load(model)
    got = gc.compile(g, backend)(feeds)
    for name, w in zip([o.name for o in model.graph.output], want):
        assert got[name].dtype == w.dtype and got[name].shape == w.shape
        np.testing.assert_allclose(got[name], w, rtol=rtol, atol=atol)
    return g


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize(
    "attrs",
    [
        {"pads": [1, 1, 1, 1]},
        {"pads": [0, 1, 2, 1], "strides": [2, 1]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"auto_pad": "SAME_LOWER", "strides": [3, 2]},
        {"pads": [2, 1, 2, 1], "dilations": [2, 1]},
        {"group": 2, "auto_pad": "VALID"},
    ],
)
def test_conv_2d(attrs):
    w = _x(4, 2 // attrs.get("group", 1), 3, 3)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    _agree(_model(node, {"x": _x(2, 2, 7, 6)}, {"w": w, "b": _x(4)}), {"x": _x(2, 2, 7, 6)})


def test_conv_1d_and_conv_transpose():
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[2, 1], strides=[2])
    feeds = {"x": _x(2, 3, 9)}
    _agree(_model(node, feeds, {"w": _x(5, 3, 4)}), feeds)
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 0, 1, 0], output_padding=[1, 1]
    )
    feeds = {"x": _x(1, 3, 4, 5)}
    _agree(_model(node, feeds, {"w": _x(3, 2, 3, 3), "b": _x(2)}), feeds)


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},  # graphc's own padding
        {"kernel_shape": [2, 3], "pads": [0, 1, 1, 2], "strides": [2, 2]},  # asymmetric: an explicit pad
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
        {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER", "strides": [2, 1]},
        {"kernel_shape": [2, 2], "dilations": [2, 3], "pads": [1, 0, 1, 1]},  # windows of strided slices
    ],
)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pools(op, attrs):
    feeds = {"x": _x(2, 3, 8, 7)}
    for include in (0, 1) if op == "AveragePool" else (None,):
        extra = {} if include is None else {"count_include_pad": include}
        _agree(_model(helper.make_node(op, ["x"], ["y"], **attrs, **extra), feeds, opset=19), feeds)


def test_global_pools_gemm_and_batchnorm():
    feeds = {"x": _x(2, 3, 4, 5)}
    _agree(_model(helper.make_node("GlobalAveragePool", ["x"], ["y"]), feeds), feeds)
    _agree(_model(helper.make_node("GlobalMaxPool", ["x"], ["y"]), feeds), feeds)
    bn = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    stats = {"s": _x(3), "b": _x(3), "m": _x(3), "v": np.abs(_x(3)) + 0.5}
    for opset in (7, 9, 15):
        _agree(_model(bn, feeds, stats, opset=opset), feeds)
    # training_mode: the batch's statistics, and the running ones updated (onnx.reference: onnxruntime
    # has no training-mode BatchNormalization)
    train = helper.make_node(
        "BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "rm", "rv"], training_mode=1, momentum=0.8
    )
    model = _model(train, feeds, stats, opset=15)
    want = ReferenceEvaluator(model).run(None, feeds)
    got = gc.run(gc.onnx.load(model), feeds)
    for name, w in zip(["y", "rm", "rv"], want):
        np.testing.assert_allclose(got[name], w, rtol=1e-5, atol=1e-6)
    gemm = helper.make_node("Gemm", ["a", "w", "c"], ["y"], alpha=0.5, beta=2.0, transB=1)
    feeds = {"a": _x(3, 4)}
    _agree(_model(gemm, feeds, {"w": _x(5, 4), "c": _x(5)}, opset=11), feeds)


def _lrn_spec(x, size, alpha, beta, bias):
    """ONNX's definition, channel by channel (onnxruntime has odd sizes only; onnx.reference's LRN loops
    over the batch axis where it means the channels)."""
    out = np.empty_like(x)
    lo, hi = (size - 1) // 2, -(-(size - 1) // 2)
    for c in range(x.shape[1]):
        window = x[:, max(0, c - lo) : min(x.shape[1], c + hi + 1)]
        out[:, c] = x[:, c] / (bias + alpha / size * (window**2).sum(axis=1)) ** beta
    return out


def test_lrn_is_a_composition_that_agrees():
    x = _x(2, 6, 3, 4)
    for size in (3, 4):
        node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=1e-2, beta=0.6, bias=2.0)
        model = _model(node, {"x": x})
        if size % 2:
            _agree(model, {"x": x})
        g = gc.onnx.load(model)
        np.testing.assert_allclose(gc.run(g, {"x": x})["y"], _lrn_spec(x, size, 1e-2, 0.6, 2.0), rtol=1e-5)
    assert "avg_pool2d" in {n.op for n in g.nodes}  # the channel window's sum


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_axis_semantics_by_opset(op, opset):
    """Before opset 13 the input is flattened to 2-D at `axis`; from 13 on `axis` alone is normalised."""
    feeds = {"x": _x(2, 3, 4)}
    _agree(_model(helper.make_node(op, ["x"], ["y"], axis=1), feeds, opset=opset), feeds)


def test_a_small_cnn_on_numba():
    """Conv + bias + Relu + MaxPool + Flatten + Gemm, compiled by numba, agrees with onnxruntime."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], transB=1, name="fc"),
    ]
    inits = {"w": _x(4, 1, 3, 3), "b": _x(4), "fc_w": _x(3, 16), "fc_b": _x(3)}
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", T.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", T.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    g = _agree(model, {"x": _x(5, 1, 4, 4)}, backend="numba")
    assert g.inputs["x"].shape == ("N", 1, 4, 4)
