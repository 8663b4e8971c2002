"""Import rules for RNN, GRU, LSTM, Scan and Loop (each a graphc scan), against onnxruntime (onnx.reference
for the batch-major layout); gradients flow to the imported weights."""

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


def _body(nodes, inputs, outputs):
    return helper.make_graph(
        nodes,
        "body",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
    )


def test_scan_with_directions_and_axes_agrees_with_onnxruntime():
    """A running sum over axis 1 of x read backwards, its outputs stacked forwards along axis 1; the body
    reads the outer `scale` by name (captured)."""
    body = _body(
        [
            helper.make_node("Mul", ["x_t", "scale"], ["xs"]),
            helper.make_node("Add", ["acc", "xs"], ["acc_out"]),
            helper.make_node("Identity", ["acc_out"], ["y_t"]),
        ],
        [("acc", T.FLOAT, [2]), ("x_t", T.FLOAT, [2])],
        [("acc_out", T.FLOAT, [2]), ("y_t", T.FLOAT, [2])],
    )
    node = helper.make_node(
        "Scan",
        ["init", "x"],
        ["final", "ys"],
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[1],
        scan_input_directions=[1],
        scan_output_axes=[1],
        scan_output_directions=[0],
    )
    graph = helper.make_graph(
        [node],
        "scan",
        [helper.make_tensor_value_info("init", T.FLOAT, [2]), helper.make_tensor_value_info("x", T.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("final", T.FLOAT, [2]), helper.make_tensor_value_info("ys", T.FLOAT, [2, 5])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    feeds = {"init": np.array([1.0, -1.0], np.float32), "x": RNG.standard_normal((2, 5)).astype(np.float32)}
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    got = gc.run(gc.onnx.load(model), feeds)
    np.testing.assert_allclose(got["final"], want[0], rtol=1e-6)
    np.testing.assert_allclose(got["ys"], want[1], rtol=1e-6)


def test_loop_with_a_known_trip_count():
    body = _body(
        [
            helper.make_node("Cast", ["i"], ["fi"], to=T.FLOAT),
            helper.make_node("Add", ["v", "fi"], ["v_out"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Mul", ["v_out", "v_out"], ["sq"]),
        ],
        [("i", T.INT64, []), ("cond", T.BOOL, []), ("v", T.FLOAT, [3])],
        [("cond_out", T.BOOL, []), ("v_out", T.FLOAT, [3]), ("sq", T.FLOAT, [3])],
    )
    node = helper.make_node("Loop", ["M", "", "v0"], ["v_final", "squares"], body=body)
    graph = helper.make_graph(
        [node],
        "loop",
        [helper.make_tensor_value_info("v0", T.FLOAT, [3])],
        [
            helper.make_tensor_value_info("v_final", T.FLOAT, [3]),
            helper.make_tensor_value_info("squares", T.FLOAT, [4, 3]),
        ],
        [numpy_helper.from_array(np.array(4, np.int64), "M")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
    feeds = {"v0": np.array([0.0, 1.0, -2.0], np.float32)}
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    got = gc.run(gc.onnx.load(model), feeds)
    np.testing.assert_allclose(got["v_final"], want[0])
    np.testing.assert_allclose(got["squares"], want[1])
    while_loop = helper.make_model(
        helper.make_graph(
            [helper.make_node("Loop", ["M", "", "v0"], ["v_final", "squares"], body=body, name="loop")],
            "loop",
            [helper.make_tensor_value_info("v0", T.FLOAT, [3]), helper.make_tensor_value_info("M", T.INT64, [])],
            [helper.make_tensor_value_info("v_final", T.FLOAT, [3])],
        ),
        opset_imports=[helper.make_opsetid("", 16)],
    )
    with pytest.raises(
        gc.GraphFileError, match=r"node 'loop' \(Loop\): its input 0 \(M, 'M'\) must be known at import"
    ):
        gc.onnx.load(while_loop)
