"""`Model.summary()`: a table of the layers with their output shapes and parameter counts, and
the totals of trainable and non-trainable parameters, in the manner of Keras.

    Model "m" (loss cross_entropy, optimizer Adam)
    Layer (type)         Output shape  Params
    =========================================
    x (input)            (batch, 5)         0
    mlp/dense (Dense)    (batch, 4)        24
    mlp/dense_1 (Dense)  (batch, 3)        15
    =========================================
    Total params: 39
    Trainable params: 39
    Non-trainable params: 0

A row is a layer: its name scope, and its class when the model was built from a network (a
model loaded from a checkpoint has its layers' scopes only). The output shape is read from the
training step's forward pass (`batch` is the batch dimension); a layer that adds no node (an
identity activation) passes its input's shape on. Trainable parameters are those the optimizer
trains; non-trainable ones are the layers' other variables (batch norm's running statistics);
the optimizer's own state (moments, step counter) is not counted.
"""

from graphc.ir.phase import Phase


def model_summary(model) -> str:
    graph = model.graph
    state = set(model.config.get("optimizer_state", ()))
    variables = [p for name, p in graph.params.items() if name not in state]
    trainable = set(graph.trainable())
    forward = [n for n in graph.live_nodes([graph.outputs["train/loss"]]) if n.phase is Phase.FORWARD]
    layers = _layers(model.net, forward)
    x = graph.inputs["x"]
    rows = [(f"{x.name} (input)", _shape(x.shape), 0)]
    shape = x.shape
    for scope, kind in layers:
        shape = _output_shape(scope, forward, graph) or shape
        count = sum(_numel(p) for p in variables if p.scope == scope)
        rows.append((f"{scope} ({kind})" if kind else scope, _shape(shape), count))
    total = sum(_numel(p) for p in variables)
    n_trainable = sum(_numel(p) for p in variables if p.name in trainable)
    opt = model.config.get("optimizer")
    opt = opt.get("optimizer") if isinstance(opt, dict) else None
    head = f'Model "{graph.name}" (loss {model.loss}' + (f", optimizer {opt})" if opt else ")")
    return _table(
        head,
        rows,
        [
            f"Total params: {total:,}",
            f"Trainable params: {n_trainable:,}",
            f"Non-trainable params: {total - n_trainable:,}",
        ],
    )


def _layers(net, forward) -> list[tuple[str, str]]:
    """(scope, class name) of each leaf layer in order: from the network when there is one,
    else the scopes of the forward pass's ops in the order they first appear."""
    if net is not None:
        return [(layer.scope, type(layer).__name__) for layer in _leaves(net) if layer.scope]
    scopes = dict.fromkeys(n.scope for n in forward if n.scope and not n.is_source)
    return [(s, "") for s in scopes]


def _leaves(layer):
    inner = getattr(layer, "layers", None)
    if inner is None:
        return [layer]
    return [leaf for child in inner for leaf in _leaves(child)]


def _output_shape(scope, forward, graph):
    """The shape of the layer's output: its last op whose value is read outside the layer (or is
    a graph output); None when the layer added no op."""
    inside = {n.id for n in forward if _within(n.scope, scope)}
    read_outside = {x.id for n in forward if n.id not in inside for x in n.inputs}
    read_outside |= {n.id for n in graph.outputs.values()}
    outs = [n for n in forward if n.id in inside and not n.is_source and n.id in read_outside]
    return outs[-1].shape if outs else None


def _within(node_scope: str, scope: str) -> bool:
    return node_scope == scope or node_scope.startswith(scope + "/")


def _shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _numel(node) -> int:
    n = 1
    for d in node.shape:
        n *= d
    return n


def _table(head: str, rows, totals) -> str:
    header = ("Layer (type)", "Output shape", "Params")
    w0 = max(len(header[0]), *(len(r[0]) for r in rows)) + 2
    w1 = max(len(header[1]), *(len(r[1]) for r in rows)) + 2
    w2 = max(len(header[2]), *(len(f"{r[2]:,}") for r in rows))
    rule = "=" * (w0 + w1 + w2)
    lines = [head, f"{header[0]:<{w0}}{header[1]:<{w1}}{header[2]:>{w2}}", rule]
    lines += [f"{name:<{w0}}{shape:<{w1}}{count:>{w2},}" for name, shape, count in rows]
    lines += [rule, *totals]
    return "\n".join(lines)
