"""Import rules for RNN, GRU and LSTM (each a graphc scan), against onnxruntime (onnx.reference for the
batch-major layout); gradients flow to the imported weights."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphc as gc

RNG = np.random.default_rng(3)
SEQ, BATCH, IN, HID = 5, 2, 3, 4
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _model(op, direction="forward", layout=0, seq_lens=False, extra=None):
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    inits = {
        "W": RNG.standard_normal((dirs, g * HID, IN)).astype(np.float32) * 0.5,
        "R": RNG.standard_normal((dirs, g * HID, HID)).astype(np.float32) * 0.5,
        "B": RNG.standard_normal((dirs, 2 * g * HID)).astype(np.float32) * 0.1,
    }
    inputs = ["X", "W", "R", "B", "lens" if seq_lens else ""]
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, inputs, outs, hidden_size=HID, direction=direction, layout=layout, **(extra or {}))
    x_shape = [BATCH, SEQ, IN] if layout else [SEQ, BATCH, IN]
    feeds = [helper.make_tensor_value_info("X", T.FLOAT, x_shape)]
    if seq_lens:
        feeds.append(helper.make_tensor_value_info("lens", T.INT32, [BATCH]))
    graph = helper.make_graph(
        [node],
        "rnn",
        feeds,
        [helper.make_tensor_value_info(o, T.FLOAT, None) for o in outs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), x_shape


@pytest.mark.parametrize(
    "op, direction, layout, extra",
    [
        ("RNN", "forward", 0, None),
        ("RNN", "reverse", 1, None),
        ("RNN", "forward", 0, {"activations": ["Relu"]}),
        ("GRU", "bidirectional", 0, None),
        ("GRU", "forward", 0, {"linear_before_reset": 1}),
        ("LSTM", "forward", 1, None),
        ("LSTM", "bidirectional", 0, {"clip": 0.8}),
    ],
)
def test_recurrent_ops_agree_with_onnxruntime(op, direction, layout, extra):
    model, x_shape = _model(op, direction, layout, extra=extra)
    feeds = {"X": RNG.standard_normal(x_shape).astype(np.float32)}
    if layout:  # onnxruntime has no batch-major recurrent ops
        want = ReferenceEvaluator(model).run(None, feeds)
    else:
        want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    g = gc.onnx.load(model)
    assert "scan" in {n.op for n in g.nodes}
    got = gc.run(g, feeds)
    for vi, w in zip(model.graph.output, want):
        np.testing.assert_allclose(got[vi.name], w, rtol=1e-5, atol=1e-6)


def test_sequence_lens_mask_the_padded_steps():
    model, x_shape = _model("LSTM", "bidirectional", seq_lens=True)
    feeds = {"X": RNG.standard_normal(x_shape).astype(np.float32), "lens": np.array([5, 3], np.int32)}
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    got = gc.run(gc.onnx.load(model), feeds)
    for vi, w in zip(model.graph.output, want):
        np.testing.assert_allclose(got[vi.name], w, rtol=1e-5, atol=1e-6)


def test_imported_weights_get_gradients():
    model, x_shape = _model("GRU")
    g = gc.onnx.load(model, trainable={"W"})
    assert g.trainable().keys() == {"W"} and set(g.params) == {"W", "R", "B"}
    with g:
        loss = gc.sum(g.outputs["Y_h"] * g.outputs["Y_h"])
    gw = gc.grad(loss, g.params["W"])
    x = RNG.standard_normal(x_shape).astype(np.float32)
    (analytic,) = gc.run(g, {"X": x}, outputs=[gw])
    w0, eps = g.values["W"].copy(), 1e-2
    i = (0, 2, 1)
    values = []
    for sign in (1, -1):
        g.values["W"] = w0.copy()
        g.values["W"][i] += sign * eps
        values.append(gc.run(g, {"X": x}, outputs=[loss])[0])
    g.values["W"] = w0
    assert analytic[i] == pytest.approx((values[0] - values[1]) / (2 * eps), rel=2e-2, abs=1e-3)
