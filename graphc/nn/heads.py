"""A model's head for each loss: the loss node, metrics and predictions (probabilities or values)."""

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse")
METRICS = ("accuracy",)
TARGETS = ("labels", "probabilities")


def loss_of(nn, kind, out, y):
    if kind == "cross_entropy":
        return nn.losses.cross_entropy(out, y)
    if kind == "binary_cross_entropy":
        return nn.losses.binary_cross_entropy_with_logits(out, y)
    return nn.losses.mse(out, y)


def metric_of(nn, name, kind, out, y):
    if kind == "binary_cross_entropy":
        return nn.metrics.binary_accuracy(out, y)
    return nn.metrics.accuracy(out, y)


def predictions_of(kind, out):
    import graphc as gc

    if kind == "cross_entropy":
        return gc.softmax(out, axis=-1)
    if kind == "binary_cross_entropy":
        return gc.sigmoid(out)
    return out
