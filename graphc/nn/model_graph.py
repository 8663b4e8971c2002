"""The graph of an nn.Model: inputs, the network called for training and for evaluation, the
loss, metrics and predictions of its head, and, for sequence models, lengths and carried state.

Inputs: `x` ("batch", *input_shape; a None in input_shape is the time axis "time"), `y`, and
`lengths` (int32 (batch,), with lengths=True: both network calls run inside
`nn.sequence_lengths(lengths)`) and the state inputs `state/...` (with stateful=True, see
graphc.nn.carried_state). Outputs: `train/loss`, `train/<metric>`, `eval/loss`, `eval/<metric>`,
`eval/output`, `eval/predictions`, and with stateful=True `train/state/...` and `eval/state/...`.

Per-step models: a cross_entropy model whose network gives (batch, time, classes) is trained on
labels (batch, time) with nn.losses.sequence_cross_entropy (mean over the valid steps); an mse
model with lengths whose outputs run along the input's time axis ((batch, time, ...)) with
nn.losses.sequence_mse.
"""

import contextlib

from graphc.errors import AttributeValueError
from graphc.ir.graph import Graph
from graphc.nn.heads import LOSSES, METRICS, TARGETS, loss_of, metric_of, predictions_of

__all__ = ["TIME", "LENGTHS", "SHARD_WEIGHT", "check_head", "sample_shape", "build_model_graph"]

TIME = "time"  # the name of the time axis, for a None in input_shape
LENGTHS = "lengths"  # the input of the sequences' lengths (lengths=True)
SHARD_WEIGHT = "shard_weight"  # input of a distributed model's step: the samples in this rank's shard


def check_head(loss: str, targets: str, metrics) -> tuple[str, ...]:
    """The metrics (defaults filled in) after checking loss, targets and metrics by name."""
    if loss not in LOSSES:
        raise AttributeValueError(f"Model: unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if targets not in TARGETS:
        raise AttributeValueError(f"Model: unknown targets {targets!r}; expected one of {', '.join(TARGETS)}")
    if targets != "labels" and loss != "cross_entropy":
        raise AttributeValueError(f"Model: targets={targets!r} is for loss 'cross_entropy', not {loss!r}")
    if metrics is None:
        metrics = () if loss == "mse" else ("accuracy",)
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for m in metrics:
        if m not in METRICS:
            raise AttributeValueError(f"Model: unknown metric {m!r}; expected one of {', '.join(METRICS)}")
        if m == "accuracy" and loss == "mse":
            raise AttributeValueError("Model: metric 'accuracy' needs a classification loss, not 'mse'")
    return metrics


def sample_shape(input_shape) -> tuple:
    """input_shape as the x input's dimensions after the batch: None -> "time" (first axis only)."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    for i, d in enumerate(shape):
        if d is None and i != 0:
            raise AttributeValueError(
                f"Model: input_shape {shape}: only the first axis (time) may be None (any length), not axis {i}"
            )
    return tuple(TIME if d is None else d for d in shape)


def build_model_graph(net, name, seed, input_shape, input_dtype, loss, targets, metrics, lengths=False,
                      stateful=False, distributed=False):  # fmt: skip
    """(graph, shard weight input or None); see the module docstring."""
    from graphc import nn
    from graphc.nn.layers.sequence import sequence_lengths

    if not isinstance(lengths, bool) or not isinstance(stateful, bool):
        raise AttributeValueError(f"Model: lengths and stateful must be True or False, got {lengths!r}, {stateful!r}")
    g = Graph(name, seed=seed)
    with g:
        x = g.input("x", ("batch", *sample_shape(input_shape)), input_dtype)
        if (lengths or stateful) and x.ndim < 3 and input_dtype.startswith("float"):
            raise AttributeValueError(
                f"Model: lengths and stateful are for sequences (batch, time, features), got x {x.type_str}"
            )
        steps = g.input(LENGTHS, ("batch",), "int32") if lengths else None
        with sequence_lengths(steps) if lengths else contextlib.nullcontext():
            if stateful:
                from graphc.nn.carried_state import CarriedState

                carried = CarriedState()
                net(x, training=False)  # builds the layers in their scopes (the nodes of this call are dead)
                out, train_state = carried.call(net, x, True)
                eval_out, eval_state = carried.call(net, x, False)
                for k in train_state:
                    g.output(f"train/{k}", train_state[k])
                    g.output(f"eval/{k}", eval_state[k])
            else:
                out = net(x, training=True)
                eval_out = net(x, training=False)
        per_step = loss == "cross_entropy" and out.ndim == 3
        y = _target_input(g, loss, targets, out, per_step)
        # outputs along the input's time axis: a symbolic one, or a concrete one with features after it
        along_time = out.ndim >= 2 and x.ndim >= 2 and out.shape[1] == x.shape[1]
        along_time = along_time and (isinstance(x.shape[1], str) or out.ndim >= 3)
        if steps is not None and along_time and loss == "binary_cross_entropy":
            raise AttributeValueError(
                "Model: per-step binary_cross_entropy with lengths is not supported (padded steps would count); "
                "use loss 'cross_entropy' with 2 classes or 'mse'"
            )
        masked = steps if per_step or (loss == "mse" and along_time) else None
        for prefix, o in (("train", out), ("eval", eval_out)):
            g.output(f"{prefix}/loss", _loss(nn, loss, o, y, per_step, masked))
            for m in metrics:
                metric = nn.losses.sequence_accuracy(o, y, masked) if per_step else metric_of(nn, m, loss, o, y)
                g.output(f"{prefix}/{m}", metric)
        g.output("eval/output", eval_out)
        g.output("eval/predictions", predictions_of(loss, eval_out))
        weight = g.input(SHARD_WEIGHT, (), "float32") if distributed else None
    return g, weight


def _target_input(g, loss, targets, out, per_step):
    if loss != "cross_entropy":
        return g.input("y", out.shape, out.dtype)
    if per_step:
        if targets == "probabilities":
            raise AttributeValueError(
                "Model: targets='probabilities' takes (batch, classes) outputs, not per-step ones"
            )
        return g.input("y", out.shape[:2], "int64")
    if out.ndim != 2 or not isinstance(out.shape[1], int):
        raise AttributeValueError(
            f"Model: loss 'cross_entropy' needs network outputs (batch, classes) or (batch, time, classes), "
            f"got {out.type_str}"
        )
    return g.input("y", out.shape, out.dtype) if targets == "probabilities" else g.input("y", ("batch",), "int64")


def _loss(nn, loss, out, y, per_step, lengths):
    if per_step:
        return nn.losses.sequence_cross_entropy(out, y, lengths)
    if loss == "mse" and lengths is not None:
        return nn.losses.sequence_mse(out, y, lengths)
    return loss_of(nn, loss, out, y)
