"""Import rules for shape ops across opsets (attributes that became inputs), and the folding of shape
computations at import, against onnx.reference (every opset) and onnxruntime."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import graphc as gc

RNG = np.random.default_rng(1)


def _model(nodes, feeds, inits=None, opset=13, outputs=("y",), dims=None, out_type=T.FLOAT):
    inits = inits or {}
    inputs = [
        helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), (dims or {}).get(k, v.shape))
        for k, v in feeds.items()
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        inputs,
        [helper.make_tensor_value_info(o, out_type, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _agree(model, feeds, oracle="reference"):
    if oracle == "reference":
        want = ReferenceEvaluator(model).run(None, feeds)
    else:
        want = ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    g = gc.onnx.load(model)
    got = gc.run(g, feeds)
    for vi, w in zip(model.graph.output, want):
        assert got[vi.name].dtype == w.dtype and got[vi.name].shape == w.shape, vi.name
        np.testing.assert_allclose(got[vi.name], w, rtol=1e-6)
    return g


X = RNG.standard_normal((2, 3, 4)).astype(np.float32)


@pytest.mark.parametrize("opset", [4, 5, 13])
def test_reshape_shape_attribute_then_input(opset):
    if opset < 5:  # onnx.reference has no Reshape-1: NumPy says what it means
        node = helper.make_node("Reshape", ["x"], ["y"], shape=[0, -1])
        got = gc.run(gc.onnx.load(_model([node], {"x": X}, opset=opset)), {"x": X})["y"]
        np.testing.assert_array_equal(got, X.reshape(2, -1))
    else:
        node = helper.make_node("Reshape", ["x", "s"], ["y"])
        _agree(_model([node], {"x": X}, {"s": np.array([0, -1, 2])}, opset=opset), {"x": X})


@pytest.mark.parametrize("opset", [9, 11, 13, 21])
def test_squeeze_unsqueeze_axes_attribute_then_input(opset):
    x = X.reshape(2, 1, 3, 4)
    if opset < 13:
        nodes = [
            helper.make_node("Squeeze", ["x"], ["s"], axes=[1]),
            helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0, -1] if opset >= 11 else [0, 4]),
        ]
        inits = {}
    else:
        nodes = [helper.make_node("Squeeze", ["x", "a1"], ["s"]), helper.make_node("Unsqueeze", ["s", "a2"], ["y"])]
        inits = {"a1": np.array([1]), "a2": np.array([0, -1])}
    g = _agree(_model(nodes, {"x": x}, inits, opset=opset), {"x": x})
    assert g.outputs["y"].shape == (1, 2, 3, 4, 1)


@pytest.mark.parametrize("opset", [9, 10, 13])
def test_slice_attributes_then_inputs(opset):
    if opset < 10:
        node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[2**62, 3], axes=[2, 1])
        _agree(_model([node], {"x": X}, opset=opset), {"x": X})
    else:
        node = helper.make_node("Slice", ["x", "b", "e", "a", "s"], ["y"])
        inits = {"b": np.array([-1, 0]), "e": np.array([-(2**62), 3]), "a": np.array([2, 1]), "s": np.array([-2, 2])}
        _agree(_model([node], {"x": X}, inits, opset=opset), {"x": X})


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_split_sizes_attribute_input_and_num_outputs(opset):
    outs = ["y", "z"] if opset != 18 else ["y", "z", "w"]
    if opset == 11:
        node = helper.make_node("Split", ["x"], outs, axis=2, split=[1, 3])
        inits = {}
    elif opset == 13:
        node = helper.make_node("Split", ["x", "sizes"], outs, axis=2)
        inits = {"sizes": np.array([3, 1])}
    else:  # uneven: the last part is the smaller one
        node = helper.make_node("Split", ["x"], outs, axis=2, num_outputs=3)
        inits = {}
    _agree(_model([node], {"x": X}, inits, opset=opset, outputs=outs), {"x": X})


@pytest.mark.parametrize("opset", [7, 11, 13])
def test_clip_bounds_attributes_then_inputs(opset):
    if opset < 11:
        node = helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.25)
        _agree(_model([node], {"x": X}, opset=opset), {"x": X})
    else:
        node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
        lo, hi = np.array(-0.5, np.float32), np.array(0.25, np.float32)
        _agree(_model([node], {"x": X, "lo": lo, "hi": hi}, opset=opset), {"x": X, "lo": lo, "hi": hi}, "onnxruntime")
        only_max = helper.make_node("Clip", ["x", "", "hi"], ["y"])
        _agree(_model([only_max], {"x": X}, {"hi": hi}, opset=opset), {"x": X})


@pytest.mark.parametrize("opset", [7, 11, 18])
@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_attributes_then_inputs(opset, mode):
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], pads=[0, 1, 2, 0, 2, 1], mode=mode, value=1.5)
        _agree(_model([node], {"x": X}, opset=opset), {"x": X})
    elif opset < 18:
        node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
        inits = {"p": np.array([0, 1, 2, 0, 2, 1]), "v": np.array(1.5, np.float32)}
        _agree(_model([node], {"x": X}, inits, opset=opset), {"x": X})
    else:
        node = helper.make_node("Pad", ["x", "p", "", "a"], ["y"], mode=mode)
        inits = {"p": np.array([3, 1, 1, 2]), "a": np.array([2, -2])}
        _agree(_model([node], {"x": X}, inits, opset=opset), {"x": X})


def test_negative_pads_crop():
    node = helper.make_node("Pad", ["x", "p"], ["y"])
    _agree(_model([node], {"x": X}, {"p": np.array([0, -1, 2, 0, 1, -1])}, opset=13), {"x": X}, "onnxruntime")


def test_gather_concat_transpose_expand_tile_flatten():
    idx = np.array([[2, 0], [-1, 1]])
    nodes = [
        helper.make_node("Gather", ["x", "i"], ["g"], axis=2),
        helper.make_node("Transpose", ["g"], ["t"], perm=[3, 0, 1, 2]),
        helper.make_node("Concat", ["t", "t"], ["c"], axis=-1),
        helper.make_node("Flatten", ["c"], ["y"], axis=-2),
        helper.make_node("Expand", ["b", "shape"], ["e"]),
        helper.make_node("Tile", ["b", "reps"], ["z"]),
    ]
    b = RNG.standard_normal((3, 1)).astype(np.float32)
    inits = {"i": idx, "shape": np.array([2, 1, 4]), "reps": np.array([2, 3])}
    model = _model(nodes, {"x": X, "b": b}, inits, outputs=("y", "e", "z"))
    _agree(model, {"x": X, "b": b}, "onnxruntime")


def test_shape_computations_fold_with_symbolic_dims():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape: folded at import, the batch dimension stays
    symbolic, and no Shape/Gather/Concat remains in the graph."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="flatten_like"),
        helper.make_node("Shape", ["y"], ["ys"], start=1),
        helper.make_node("ConstantOfShape", ["ys"], ["ones"], value=numpy_helper.from_array(np.ones(1, np.float32))),
        helper.make_node("Add", ["y", "ones"], ["z"]),
    ]
    inits = {"zero": np.array(0), "axes": np.array([0]), "minus1": np.array([-1])}
    model = _model(nodes, {"x": X}, inits, opset=15, outputs=("y", "z"), dims={"x": ["batch", 3, 4]})
    g = _agree(model, {"x": X}, "onnxruntime")
    assert g.outputs["y"].shape == ("batch", 12)
    assert {n.op for n in g.live_nodes()} == {"input", "reshape", "const", "add"}
    bigger = RNG.standard_normal((5, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(gc.run(g, {"x": bigger})["z"], bigger.reshape(5, 12) + 1)


def test_arithmetic_on_a_symbolic_dimension_is_refused_by_name():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Mul", ["s", "two"], ["s2"], name="double"),
        helper.make_node("Reshape", ["x", "s2"], ["y"]),
    ]
    model = _model(nodes, {"x": X}, {"two": np.array([2, 1, 1])}, dims={"x": ["batch", 3, 4]})
    with pytest.raises(gc.GraphFileError, match=r"node 'double' \(Mul\): its result computes with symbolic dimension"):
        gc.onnx.load(model)


def _every_opset_model(opset):
    """Unsqueeze -> ReduceSum -> Clip -> Split -> Softmax, each in the form its opset defines."""
    inits = {}
    if opset < 13:
        unsq = helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0])
        red = helper.make_node("ReduceSum", ["u"], ["r"], axes=[3], keepdims=1)
        split = helper.make_node("Split", ["c"], ["s0", "s1"], axis=2, split=[1, 2])
    else:
        inits.update(ax0=np.array([0]), ax3=np.array([3]), sizes=np.array([1, 2]))
        unsq = helper.make_node("Unsqueeze", ["x", "ax0"], ["u"])
        red = helper.make_node("ReduceSum", ["u", "ax3"], ["r"], keepdims=1)
        split = helper.make_node("Split", ["c", "sizes"], ["s0", "s1"], axis=2)
    if opset < 11:
        clip = helper.make_node("Clip", ["r"], ["c"], min=-1.0, max=1.5)
    else:
        inits.update(lo=np.array(-1.0, np.float32), hi=np.array(1.5, np.float32))
        clip = helper.make_node("Clip", ["r", "lo", "hi"], ["c"])
    soft = helper.make_node("Softmax", ["s1"], ["y"], axis=1)
    return _model([unsq, red, clip, split, soft], {"x": X}, inits, opset=opset)


@pytest.mark.parametrize("opset", range(7, onnx.defs.onnx_opset_version() + 1))
def test_every_opset_from_7_to_the_newest(opset):
    # onnxruntime: onnx.reference computes Softmax before opset 13 with the later axis semantics
    _agree(_every_opset_model(opset), {"x": X}, "onnxruntime")


def test_shape_arithmetic_without_graphc_ops_is_computed_at_import():
    """Floor, Ceil, Mod and ReduceProd have no graphc op: on values known at import (shape arithmetic)
    they are computed then; on run-time values they are refused by name."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Cast", ["s"], ["sf"], to=T.FLOAT),
        helper.make_node("Div", ["sf", "three"], ["q"]),
        helper.make_node("Ceil", ["q"], ["c"]),
        helper.make_node("Floor", ["q"], ["f"]),
        helper.make_node("Cast", ["c"], ["ci"], to=T.INT64),
        helper.make_node("Mod", ["s", "two"], ["m"]),
        helper.make_node("ReduceProd", ["s"], ["numel"], keepdims=1),
        helper.make_node("Concat", ["numel", "ci", "m"], ["y"], axis=0),
        helper.make_node("Unsqueeze", ["f", "one"], ["f1"]),
        helper.make_node("Add", ["x", "f1"], ["z"]),
    ]
    inits = {"three": np.array(3.0, np.float32), "two": np.array(2), "one": np.array([1])}
    model = _model(nodes, {"x": X}, inits, opset=13, outputs=("y", "z"))
    model.graph.output[0].type.tensor_type.elem_type = T.INT64
    g = _agree(model, {"x": X}, "onnxruntime")
    assert g.outputs["y"].is_const and {n.op for n in g.live_nodes()} == {"input", "const", "add"}
    at_run_time = _model([helper.make_node("Floor", ["x"], ["y"], name="floor")], {"x": X})
    with pytest.raises(gc.GraphFileError, match=r"node 'floor' \(Floor\): Floor of a value computed at run time"):
        gc.onnx.load(at_run_time)
