"""ONNX export rules of the elementwise, activation, reduction, shape and matrix ops.

Each rule is registered on its op as the op's "onnx" lowering; see export_emitter.py for the
signature `rule(node, e, ins) -> value name(s)`. Every rule writes opset-17 nodes.
"""

import math

import numpy as np

from graphc.onnx.export_emitter import ONNX_DTYPES, NoOnnxForm
from graphc.ops.registry import lowering

ONNX = "onnx"  # the lowerings key of the ONNX export


def _same(op: str, onnx_type: str, **attrs):
    """An op that is one ONNX node of the same inputs."""

    def rule(node, e, ins):
        return e.op(onnx_type, ins, **{k: (v(node) if callable(v) else v) for k, v in attrs.items()})

    lowering(op, ONNX)(rule)


for _op, _onnx in {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "pow": "Pow",
    "neg": "Neg",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "abs": "Abs",
    "sign": "Sign",
    "erf": "Erf",
    "sin": "Sin",
    "cos": "Cos",
    "maximum": "Max",
    "minimum": "Min",
    "where": "Where",
    "less": "Less",
    "less_equal": "LessOrEqual",
    "greater": "Greater",
    "greater_equal": "GreaterOrEqual",
    "equal": "Equal",
    "logical_not": "Not",
    "relu": "Relu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "softplus": "Softplus",
    "matmul": "MatMul",
}.items():
    _same(_op, _onnx)

_same("leaky_relu", "LeakyRelu", alpha=lambda n: n.attrs["alpha"])
_same("softmax", "Softmax", axis=lambda n: n.attrs["axis"])
_same("log_softmax", "LogSoftmax", axis=lambda n: n.attrs["axis"])
_same("cast", "Cast", to=lambda n: ONNX_DTYPES[n.attrs["dtype"]])
_same("transpose", "Transpose", perm=lambda n: list(n.attrs["perm"]))


@lowering("not_equal", ONNX)
def _not_equal(node, e, ins):
    return e.op("Not", [e.op("Equal", ins)])


@lowering("gelu", ONNX)
def _gelu(node, e, ins):
    # opset 17 has no Gelu (it came in 20): x * 0.5 * (1 + erf(x / sqrt(2))), the exact form graphc computes
    (x,) = ins
    dt = node.dtype
    scaled = e.op("Mul", [x, e.const(1.0 / math.sqrt(2.0), dt)])
    one_plus = e.op("Add", [e.op("Erf", [scaled]), e.const(1.0, dt)])
    return e.op("Mul", [e.op("Mul", [x, e.const(0.5, dt)]), one_plus])


# -- reductions -------------------------------------------------------------------------------------
def _reduce(onnx_type: str, axes_as_input: bool):
    def rule(node, e, ins):
        (x,) = ins
        if node.inputs[0].dtype == "bool":  # ONNX reduces numbers; graphc counts bools as int64
            x = e.op("Cast", [x], to=ONNX_DTYPES[node.dtype])
        axes, keep = list(node.attrs["axes"]), int(node.attrs["keepdims"])
        if not axes:
            return e.op("Identity", [x])
        if axes_as_input:
            return e.op(onnx_type, [x, e.ints(axes)], keepdims=keep)
        return e.op(onnx_type, [x], axes=axes, keepdims=keep)

    return rule


lowering("sum", ONNX)(_reduce("ReduceSum", axes_as_input=True))  # axes became an input in opset 13
lowering("mean", ONNX)(_reduce("ReduceMean", axes_as_input=False))  # ... and in 18 for the others
lowering("max", ONNX)(_reduce("ReduceMax", axes_as_input=False))


@lowering("argmax", ONNX)
def _argmax(node, e, ins):
    x = ins[0]
    if node.inputs[0].dtype == "bool":
        x = e.op("Cast", [x], to=ONNX_DTYPES["int32"])
    return e.op("ArgMax", [x], axis=node.attrs["axis"], keepdims=int(node.attrs["keepdims"]))  # first max, as NumPy


@lowering("shape_size", ONNX)
def _shape_size(node, e, ins):
    x = node.inputs[0]
    dims = [e.shape([x.shape[a]]) if isinstance(x.shape[a], str) else None for a in node.attrs["axes"]]
    known = math.prod(x.shape[a] for a in node.attrs["axes"] if isinstance(x.shape[a], int))
    sizes = [d for d in dims if d is not None]
    total = e.op("ReduceProd", [e.op("Concat", sizes, axis=0) if len(sizes) > 1 else sizes[0]], keepdims=1)
    total = e.op("Reshape", [total, e.ints([])])  # [1] -> a scalar
    total = e.op("Mul", [total, e.const(np.int64(known))]) if known != 1 else total
    return e.op("Cast", [total], to=ONNX_DTYPES[node.dtype])


# -- shapes -----------------------------------------------------------------------------------------
@lowering("reshape", ONNX)
def _reshape(node, e, ins):
    src, target = node.inputs[0].shape, node.shape
    # A symbolic dim in place stays (0: copy the input's dim); one other may be inferred (-1);
    # only a shape that needs more reads the sizes at run time.
    spec = [0 if isinstance(d, str) and i < len(src) and src[i] == d else d for i, d in enumerate(target)]
    rest = [i for i, d in enumerate(spec) if isinstance(d, str)]
    if len(rest) == 1:
        spec[rest[0]] = -1
    if 0 in target:  # an empty axis: 0 must mean 0, not "copy"
        return e.op("Reshape", [ins[0], e.shape(target)], allowzero=1)
    if any(isinstance(d, str) for d in spec):
        return e.op("Reshape", [ins[0], e.shape(target)])
    return e.op("Reshape", [ins[0], e.ints(spec)])


@lowering("broadcast_to", ONNX)
def _broadcast_to(node, e, ins):
    src, target = node.inputs[0].shape, node.shape
    lead = len(target) - len(src)
    # Expand broadcasts both ways: 1 keeps the input's size, so a symbolic dim the input has stays 1
    spec = [1 if isinstance(d, str) and i >= lead and src[i - lead] == d else d for i, d in enumerate(target)]
    return e.op("Expand", [ins[0], e.shape(spec)])


@lowering("full_like", ONNX)
def _full_like(node, e, ins):
    value = np.asarray([node.attrs["value"]], dtype=node.dtype)
    from onnx import numpy_helper

    return e.op("ConstantOfShape", [e.op("Shape", ins)], value=numpy_helper.from_array(value))


@lowering("tuple_get", ONNX)
def _tuple_get(node, e, ins):
    name = e.outputs_of(node.inputs[0])[node.attrs["index"]]
    if name is None:
        raise NoOnnxForm(f"output {node.attrs['index']} of {node.inputs[0].label} is not exported")
    return name
