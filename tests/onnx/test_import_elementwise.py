"""Import rules for elementwise, activation, logic and reduction ops, against onnxruntime."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

import graphc as gc

RNG = np.random.default_rng(2)
A = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal((4,)).astype(np.float32) + 0.1


def _run_both(node, feeds, opset=17, inits=None, out_type=T.FLOAT):
    graph = helper.make_graph(
        [node],
        "t",
        [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape) for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, out_type, None) for o in node.output],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    got = gc.run(gc.onnx.load(model), feeds)
    for name, w in zip(node.output, want):
        assert got[name].dtype == w.dtype and got[name].shape == w.shape, name
        np.testing.assert_allclose(got[name], w, rtol=2e-6, atol=1e-6)


BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu"]


@pytest.mark.parametrize("op", BINARY)
def test_binary_float(op):
    a = np.abs(A) + 0.5 if op == "Pow" else A
    _run_both(helper.make_node(op, ["a", "b"], ["y"]), {"a": a, "b": B})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min"])
def test_binary_int64_div_truncates(op):
    a = np.array([[7, -7, 9], [-9, 4, 0]], np.int64)
    b = np.array([2, 3, -4], np.int64)
    _run_both(helper.make_node(op, ["a", "b"], ["y"]), {"a": a, "b": b}, out_type=T.INT64)


UNARY = {
    "Abs": {},
    "Neg": {},
    "Exp": {},
    "Sqrt": {},
    "Log": {},
    "Reciprocal": {},
    "Sin": {},
    "Cos": {},
    "Tan": {},
    "Erf": {},
    "Sign": {},
    "Relu": {},
    "Sigmoid": {},
    "Tanh": {},
    "Softplus": {},
    "Softsign": {},
    "LeakyRelu": {"alpha": 0.2},
    "Elu": {"alpha": 0.7},
    "Selu": {},
    "Celu": {"alpha": 1.3},
    "HardSigmoid": {"alpha": 0.3, "beta": 0.4},
    "HardSwish": {},
    "ThresholdedRelu": {"alpha": 0.3},
    "Mish": {},
    "Gelu": {"approximate": "tanh"},
    "Identity": {},
    "Dropout": {"seed": 3},
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_and_activations(op):
    x = np.abs(A) + 0.1 if op in ("Sqrt", "Log") else A
    _run_both(helper.make_node(op, ["x"], ["y"], **UNARY[op]), {"x": x}, opset=20)


def test_comparisons_logic_where_and_cast():
    a, b = A, np.round(A, 0)
    for op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
        _run_both(helper.make_node(op, ["a", "b"], ["y"]), {"a": a, "b": b}, out_type=T.BOOL)
    p, q = A > 0, A > 0.5
    for op in ("And", "Or", "Xor"):
        _run_both(helper.make_node(op, ["p", "q"], ["y"]), {"p": p, "q": q}, out_type=T.BOOL)
    _run_both(helper.make_node("Not", ["p"], ["y"]), {"p": p}, out_type=T.BOOL)
    _run_both(helper.make_node("Where", ["p", "a", "b"], ["y"]), {"p": p, "a": a, "b": b})
    _run_both(helper.make_node("Cast", ["a"], ["y"], to=T.INT32), {"a": a * 10}, out_type=T.INT32)
    _run_both(helper.make_node("CastLike", ["p", "a"], ["y"]), {"p": p, "a": a})


REDUCTIONS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare"]


@pytest.mark.parametrize("opset", [11, 18])
@pytest.mark.parametrize("op", REDUCTIONS + ["ReduceLogSumExp"])
def test_reductions_axes_attribute_then_input(op, opset):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    if opset < 13 or (op != "ReduceSum" and opset < 18):
        node = helper.make_node(op, ["x"], ["y"], axes=[0, -1], keepdims=0)
        _run_both(node, {"x": x}, opset=opset)
    else:
        _run_both(helper.make_node(op, ["x", "axes"], ["y"], keepdims=1), {"x": x}, opset, {"axes": np.array([1])})
        _run_both(helper.make_node(op, ["x"], ["y"], keepdims=0), {"x": x}, opset)  # no axes: all of them


@pytest.mark.parametrize("select_last", [0, 1])
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_argmax_argmin(op, select_last):
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, -1.0]], np.float32)
    node = helper.make_node(op, ["x"], ["y"], axis=1, keepdims=0, select_last_index=select_last)
    _run_both(node, {"x": x}, out_type=T.INT64)
