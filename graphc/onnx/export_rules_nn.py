"""ONNX export rules of convolution, pooling, indexing, the losses and the scan (as ONNX Scan).

Registered on the ops as their "onnx" lowering, like export_rules.py; opset 17.
"""

import numpy as np

from graphc.onnx.export_emitter import INT64_MIN, ONNX_DTYPES, value_info, value_infos
from graphc.onnx.export_rules import ONNX
from graphc.ops.registry import lowering


def _pads(padding):
    """graphc's (top, bottom, left, right) as ONNX's [top, left, bottom, right]."""
    t, b, left, r = padding
    return [t, left, b, r]


@lowering("conv2d", ONNX)
def _conv2d(node, e, ins):
    a = node.attrs
    return e.op(
        "Conv",
        ins,
        kernel_shape=list(node.inputs[1].shape[2:]),
        strides=list(a["stride"]),
        dilations=list(a["dilation"]),
        pads=_pads(a["padding"]),
        group=a["groups"],
    )


@lowering("conv2d_grad_input", ONNX)
def _conv2d_grad_input(node, e, ins):
    # the transposed convolution: ONNX's ConvTranspose with graphc's weight layout (O, C/groups, kh, kw);
    # output_padding makes up the rows and columns a strided conv2d dropped, so the output is input_hw
    a = node.attrs
    k = node.inputs[1].shape[2:]
    out_pad = []
    for axis in range(2):
        size, stride, dil = node.inputs[0].shape[2 + axis], a["stride"][axis], a["dilation"][axis]
        lo, hi = a["padding"][2 * axis], a["padding"][2 * axis + 1]
        out_pad.append(a["input_hw"][axis] - (stride * (size - 1) + dil * (k[axis] - 1) + 1 - lo - hi))
    return e.op(
        "ConvTranspose",
        ins,
        kernel_shape=list(k),
        strides=list(a["stride"]),
        dilations=list(a["dilation"]),
        pads=_pads(a["padding"]),
        output_padding=out_pad if any(out_pad) else None,
        group=a["groups"],
    )


@lowering("max_pool2d", ONNX)
def _max_pool2d(node, e, ins):
    a = node.attrs  # ONNX pads MaxPool with -inf, as graphc does
    return e.op("MaxPool", ins, kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=_pads(a["padding"]))


@lowering("avg_pool2d", ONNX)
def _avg_pool2d(node, e, ins):
    a = node.attrs
    return e.op(
        "AveragePool",
        ins,
        kernel_shape=list(a["kernel"]),
        strides=list(a["stride"]),
        pads=_pads(a["padding"]),
        count_include_pad=int(a["count_include_pad"]),
    )


# -- indexing ---------------------------------------------------------------------------------------
@lowering("slice", ONNX)
def _slice(node, e, ins):
    axes = [i for i, entry in enumerate(node.attrs["index"]) if entry is not None]
    entries = [node.attrs["index"][i] for i in axes]
    starts = [s for s, _, _ in entries]
    ends = [INT64_MIN if stop is None else stop for _, stop, _ in entries]  # None: past index 0, stepping down
    # a stop of -1 (graphc: run down to index 0 included) is a real index in ONNX: it counts from the end
    ends = [INT64_MIN if end == -1 else end for end in ends]
    steps = [step for _, _, step in entries]
    return e.op("Slice", [ins[0], e.ints(starts), e.ints(ends), e.ints(axes), e.ints(steps)])


@lowering("concat", ONNX)
def _concat(node, e, ins):
    return e.op("Concat", ins, axis=node.attrs["axis"])


@lowering("split", ONNX)
def _split(node, e, ins):
    sizes = list(node.attrs["sizes"])
    out = e.op("Split", [ins[0], e.ints(sizes)], n_out=len(sizes), axis=node.attrs["axis"])
    return out if len(sizes) > 1 else [out]


@lowering("take", ONNX)
def _take(node, e, ins):
    return e.op("Gather", ins, axis=node.attrs["axis"])  # negative indices count from the end, as in graphc


@lowering("one_hot", ONNX)
def _one_hot(node, e, ins):
    # labels == classes, as graphc's reference computes it: ONNX's OneHot has kernels for only a few
    # dtype combinations in onnxruntime, Equal and Cast for all
    a = node.attrs
    labels = node.inputs[0]
    classes = np.arange(a["depth"], dtype=labels.dtype).reshape((a["depth"],) + (1,) * (labels.ndim - a["axis"]))
    hit = e.op("Equal", [e.op("Unsqueeze", [ins[0], e.ints([a["axis"]])]), e.const(classes)])
    return e.op("Cast", [hit], to=ONNX_DTYPES[a["dtype"]])


@lowering("sequence_mask", ONNX)
def _sequence_mask(node, e, ins):
    maxlen = node.attrs["maxlen"]  # the lengths are not checked: ONNX has no error to raise
    if isinstance(maxlen, str):
        steps = e.op(
            "Range", [e.const(np.int64(0)), e.op("Squeeze", [e.dim(maxlen), e.ints([0])]), e.const(np.int64(1))]
        )
    else:
        steps = e.const(np.arange(maxlen, dtype=np.int64))
    lengths = e.op("Cast", [ins[0]], to=ONNX_DTYPES["int64"]) if node.inputs[0].dtype != "int64" else ins[0]
    mask = e.op("Less", [steps, e.op("Unsqueeze", [lengths, e.ints([-1])])])
    return mask if node.dtype == "bool" else e.op("Cast", [mask], to=ONNX_DTYPES[node.dtype])


@lowering("pad", ONNX)
def _pad(node, e, ins):
    pads = node.attrs["pads"]
    amounts = e.ints([lo for lo, _ in pads] + [hi for _, hi in pads])
    value = e.const(np.asarray(node.attrs["value"], dtype=node.dtype))
    return e.op("Pad", [ins[0], amounts, value], mode="constant")


# -- losses (per example; the mean or sum after them is a reduction node of its own) ----------------
@lowering("cross_entropy_labels", ONNX)
def _cross_entropy_labels(node, e, ins):
    ax = node.attrs["axis"]
    logits, labels = ins
    logp = e.op("LogSoftmax", [logits], axis=ax)
    labels = e.op("Cast", [labels], to=ONNX_DTYPES["int64"]) if node.inputs[1].dtype != "int64" else labels
    picked = e.op("GatherElements", [logp, e.op("Unsqueeze", [labels, e.ints([ax])])], axis=ax)
    return e.op("Neg", [e.op("Squeeze", [picked, e.ints([ax])])])


@lowering("cross_entropy_labels_grad", ONNX)
def _cross_entropy_labels_grad(node, e, ins):
    ax = node.attrs["axis"]
    logits, labels, g = ins
    x, lab = node.inputs[0], node.inputs[1]
    depth = x.shape[ax]
    classes = np.arange(depth, dtype=lab.dtype).reshape((depth,) + (1,) * (x.ndim - 1 - ax))
    hit = e.op("Equal", [e.op("Unsqueeze", [labels, e.ints([ax])]), e.const(classes)])
    onehot = e.op("Cast", [hit], to=ONNX_DTYPES[node.dtype])
    diff = e.op("Sub", [e.op("Softmax", [logits], axis=ax), onehot])
    return e.op("Mul", [diff, e.op("Unsqueeze", [g, e.ints([ax])])])


@lowering("cross_entropy_probs", ONNX)
def _cross_entropy_probs(node, e, ins):
    ax = node.attrs["axis"]
    logits, t = ins
    zero = e.const(np.asarray(0, dtype=node.dtype))
    terms = e.op("Mul", [t, e.op("Neg", [e.op("LogSoftmax", [logits], axis=ax)])])
    terms = e.op("Where", [e.op("Equal", [t, zero]), zero, terms])  # 0 where t is 0, even at logits -inf
    return e.op("ReduceSum", [terms, e.ints([ax])], keepdims=0)


@lowering("bce_with_logits", ONNX)
def _bce_with_logits(node, e, ins):
    x, t = ins  # max(x, 0) - x t + log(1 + exp(-|x|)), as graphc computes it
    softplus = e.op("Softplus", [e.op("Neg", [e.op("Abs", [x])])])
    return e.op("Add", [e.op("Sub", [e.op("Relu", [x]), e.op("Mul", [x, t])]), softplus])


# -- the scan, as ONNX Scan (or Loop, for a scan without xs) ---------------------------------------
@lowering("scan", ONNX)
def _scan(node, e, ins):
    a = node.attrs
    body, nc, nx = a["body"], a["num_carry"], a["num_xs"]
    ny = len(body.outputs) - nc
    used = e.used.get(node.id, set())
    residuals = [i for i in range(nc) if nc + ny + i in used]  # the stacked carries entering each step
    stacked = ny + len(residuals)
    reverse = int(a["reverse"])
    if nx == 0:
        return _loop(node, e, ins, residuals)
    graph = _body(e, body, ins[nc + nx :], residuals, loop=False)
    outs = e.op(
        "Scan",
        ins[: nc + nx],
        n_out=nc + stacked,
        body=graph,
        num_scan_inputs=nx,
        scan_input_directions=[reverse] * nx,
        scan_output_directions=[reverse] * stacked if stacked else None,  # 1 prepends: index t holds step t
    )
    return _values(outs, nc, ny, residuals)


def _loop(node, e, ins, residuals):
    """A scan without xs as ONNX Loop: `length` iterations; a reverse scan's stacked outputs are flipped
    (Loop stacks in iteration order, graphc by time index)."""
    a = node.attrs
    body, nc = a["body"], a["num_carry"]
    ny = len(body.outputs) - nc
    trips = e.const(np.int64(a["length"]))  # an int: gc.scan takes length= only as one
    graph = _body(e, body, ins[nc:], residuals, loop=True)
    outs = e.op("Loop", [trips, "", *ins[:nc]], n_out=nc + ny + len(residuals), body=graph)
    outs = outs if isinstance(outs, list) else [outs]
    if a["reverse"]:
        flip = [e.ints([-1]), e.ints([INT64_MIN]), e.ints([0]), e.ints([-1])]
        outs = outs[:nc] + [e.op("Slice", [o, *flip]) for o in outs[nc:]]
    return _values(outs, nc, ny, residuals)


def _values(outs, nc, ny, residuals):
    """The scan node's outputs (final carries, stacked ys, stacked carries in) from the ONNX node's."""
    outs = outs if isinstance(outs, list) else [outs]
    values = outs[: nc + ny] + [None] * nc
    for k, i in enumerate(residuals):
        values[nc + ny + i] = outs[nc + ny + k]
    return values


def _body(e, body, captured_names, residuals, loop: bool):
    """The ONNX graph of a scan body: its inputs (Loop's: the iteration number and condition first),
    the body's nodes (captured values read from the outer graph by name), then the new carries, the
    per-step ys and the carries entering the step (for the residuals asked for)."""
    from onnx import TensorProto, helper

    inner = e.body({})
    formal = []
    if loop:
        it, cond = e.names.fresh(f"{e.hint('body')}/iteration"), e.names.fresh(f"{e.hint('body')}/cond")
        formal += [helper.make_tensor_value_info(it, TensorProto.INT64, []), value_info(cond, (), "bool")]
    for x in body.inputs:
        name = e.names.fresh(f"{e.hint('body')}/{x.name}")
        inner.bind(x, name)
        formal.append(value_info(name, x.shape, x.dtype))
        for axis, d in enumerate(x.shape):
            if isinstance(d, str):
                inner.dims.setdefault(d, (name, axis))
    for x, outer_name in zip(body.captured, captured_names):
        inner.bind(x, outer_name)  # ONNX bodies read outer values by name
    inner.emit(body.nodes)
    results = [(inner.name_of(o), o) for o in body.outputs]
    results += [(inner.name_of(body.inputs[i]), body.inputs[i]) for i in residuals]
    wanted = [e.names.fresh(f"{e.hint('body')}/out{k}") for k in range(len(results))]
    named = list(zip(wanted, (r for r, _ in results)))
    types = [(n.shape, n.dtype) for _, n in results]
    if loop:  # Loop's body gives the condition first: always true (the trip count ends it)
        named.insert(0, (e.names.fresh(f"{e.hint('body')}/cond_out"), cond))
        types.insert(0, ((), "bool"))
    out_names = inner.finish_outputs(named)
    outputs = [value_info(name, shape, dtype) for name, (shape, dtype) in zip(out_names, types)]
    return helper.make_graph(
        inner.nodes, e.names.fresh(e.hint("body")), formal, outputs, value_info=value_infos(inner, out_names)
    )
