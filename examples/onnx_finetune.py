"""Fine-tuning an imported ONNX model: pretrain, export, import with frozen layers, add a head, train.

1. Pretrain a small MLP feature extractor (64 pixels -> 64 -> 32, relu) with a 5-class head on the
   bundled digits 0-4 only, and export it (features and logits) with gc.onnx.save.
2. Import it with gc.onnx.load(path, trainable=...): the first layer's initializers become frozen
   parameters, the second layer's trainable ones (--frozen all freezes both).
3. Add a new 10-class head (nn.Dense) on the imported `features` output and train the head and the
   unfrozen layer on all ten digits; the old 5-class head is left out of the training graph.

    python examples/onnx_finetune.py                # test accuracy >= 0.93 on all ten digits (0.936-0.964, seeds 0-2)
    python examples/onnx_finetune.py --frozen all   # only the new head trains: >= 0.85 (0.852-0.883)
    graphc render examples/onnx_finetune.py --view train -o finetune.svg   # build(): the fine-tuning graph
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

import graphc as gc
from graphc import nn
from graphc.datasets import load_digits, train_test_split

PRETRAIN_CLASSES = 5  # the pretrained model sees digits 0-4 only


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--frozen", choices=("first", "all"), default="first", help="imported layers kept fixed")
    p.add_argument("--onnx", default=None, help="where to write the pretrained model (default: a temporary file)")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def data(seed):
    X, y = load_digits(flat=True)
    return train_test_split(X.astype("float32"), y.astype("int64"), test_size=0.2, seed=seed, stratify=True)


def classifier_graph(name: str, seed: int):
    """(graph, features layer): the pretraining network; outputs features, logits and loss."""
    g = gc.Graph(name, seed=seed)
    with g:
        x = g.input("x", ("batch", 64))
        y = g.input("y", ("batch",), "int64")
        features = nn.Sequential([nn.Dense(64, activation="relu"), nn.Dense(32, activation="relu")], name="features")
        f = features(x)
        logits = nn.Dense(PRETRAIN_CLASSES, name="head")(f)
        g.output("features", f)
        g.output("logits", logits)
        g.output("loss", gc.cross_entropy(logits, y))
    return g


def train(g, params, X, y, epochs, args, log):
    """Adam on the `loss` output over `params` (names; None: every trainable parameter it depends on)."""
    nn.training_graph(g.outputs["loss"], nn.optim.Adam(lr=args.lr), params=params)
    if epochs == 0:
        return
    step = gc.compile(g, backend=args.backend or nn.model.default_backend(), outputs=["loss"], apply_updates=True)
    rng = np.random.default_rng(args.seed)
    for epoch in range(epochs):
        order = rng.permutation(len(X))
        losses = [float(step(x=X[b], y=y[b])[0]) for b in np.array_split(order, max(1, len(X) // args.batch_size))]
        if not args.quiet and (epoch + 1) % 5 == 0:
            log(f"  epoch {epoch + 1}: loss {np.mean(losses):.4f}")


def accuracy(g, output, X, y, backend) -> float:
    logits = gc.compile(g, backend=backend or nn.model.default_backend(), outputs=[output], apply_updates=False)(x=X)[0]
    return float(np.mean(np.argmax(logits, axis=1) == y))


def pretrain(args, Xtr, ytr, path, log):
    """Train the classifier on digits 0-4 and export its features and logits to `path`."""
    g = classifier_graph("digits_0_4", args.seed)
    keep = ytr < PRETRAIN_CLASSES
    train(g, None, Xtr[keep], ytr[keep], args.pretrain_epochs, args, log)
    gc.onnx.save(g, path, outputs=["features", "logits"])
    return g


def finetune_graph(path, frozen: str, seed: int):
    """The imported model with a new 10-class head on its features; returns (graph, trainable names)."""
    layer = "features/dense_1"  # the second feature layer trains unless --frozen all
    trainable = set() if frozen == "all" else {f"{layer}/w", f"{layer}/b"}
    g = gc.onnx.load(path, trainable=trainable, name="finetune")
    with g:
        y = g.input("y", ("batch",), "int64")
        logits = nn.Dense(10, name="new_head")(g.outputs["features"])
        g.output("new_logits", logits)
        g.output("loss", gc.cross_entropy(logits, y))
    return g


def build():
    """The fine-tuning graph (imported layers, new head), before training (what `graphc render` draws)."""
    args = parse_args(["--pretrain-epochs", "0"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pretrained.onnx"
        pretrain(args, *data(args.seed)[::2], path, lambda s: None)
        g = finetune_graph(path, args.frozen, args.seed)
    nn.training_graph(g.outputs["loss"], nn.optim.Adam(lr=args.lr))
    return g


def main(argv=None) -> dict:
    args = parse_args(argv)
    log = print if not args.quiet else (lambda s: None)
    Xtr, Xte, ytr, yte = data(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.onnx) if args.onnx else Path(tmp) / "pretrained.onnx"
        log(f"pretraining on digits 0-{PRETRAIN_CLASSES - 1}")
        pre = pretrain(args, Xtr, ytr, path, log)
        seen = yte < PRETRAIN_CLASSES
        pre_acc = accuracy(pre, "logits", Xte[seen], yte[seen], args.backend)
        log(f"pretrained accuracy on test digits 0-{PRETRAIN_CLASSES - 1}: {pre_acc:.4f}; exported {path}")
        g = finetune_graph(path, args.frozen, args.seed)
    frozen = sorted(k for k, p in g.params.items() if not p.attrs["trainable"])
    trained = sorted(k for k, p in g.params.items() if p.attrs["trainable"])
    log(f"frozen: {', '.join(frozen)}; trained: {', '.join(trained)}")
    before = {k: g.values[k].copy() for k in frozen}
    train(g, None, Xtr, ytr, args.epochs, args, log)  # the trainable parameters the new loss depends on
    acc = accuracy(g, "new_logits", Xte, yte, args.backend)
    assert all(np.array_equal(g.values[k], v) for k, v in before.items())  # the frozen layers did not move
    print(f"test accuracy (all ten digits): {acc:.4f}")
    return {"accuracy": acc, "pretrained_accuracy": pre_acc, "frozen": frozen, "trained": trained, "graph": g}


if __name__ == "__main__":
    main()
