"""A perceptron on a linearly separable problem: iris setosa against the other two species.

One dense unit (w.x + b) trained with a logistic loss by plain gradient descent: the decision
rule is the perceptron's sign(w.x + b). Setosa is linearly separable from the others, so the
test accuracy reaches 1.0.

    python examples/perceptron.py --epochs 20 --out perceptron_out
    graphc render examples/perceptron.py -o perceptron.svg   # build(): the model, untrained
"""

import argparse
from pathlib import Path

import numpy as np

from graphc import nn
from graphc.datasets import load_iris, train_test_split


def linear_form(w, b) -> str:
    """w.x + b as a person writes it: `1.75*x0 - 1.60*x1 + 0.30` (not `+1.75*x0 + -1.60*x1 +0.30`)."""
    terms = [(float(c), f"*x{i}") for i, c in enumerate(w)] + [(float(b), "")]
    text = ""
    for c, var in terms:
        negative = round(c, 2) < 0  # the sign of the printed value: -0.004 prints as + 0.00
        term = f"{abs(c):.2f}{var}"
        text += ("-" if negative else "") + term if not text else f" {'-' if negative else '+'} {term}"
    return text


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--out", default=None, help="folder for curves.png")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def make_model(args):
    net = nn.Sequential([nn.Dense(1)], name="perceptron")
    return nn.Model(net, input_shape=(4,), loss="binary_cross_entropy", optimizer=nn.optim.GD(lr=args.lr),
                    backend=args.backend, seed=args.seed, name="perceptron")  # fmt: skip


def build():
    """The model `python examples/perceptron.py` trains, before training (what `graphc render` draws)."""
    return make_model(parse_args([]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    X, y = load_iris(binary=True)  # y = 1 for setosa
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, seed=args.seed, stratify=True)
    model = make_model(args)
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=16, validation_data=(Xte, yte), seed=args.seed,
              progress=not args.quiet)  # fmt: skip
    result = model.evaluate(Xte, yte)
    w = model.graph.values["perceptron/dense/w"].ravel()
    b = float(model.graph.values["perceptron/dense/b"].ravel()[0])
    print(f"decision rule: setosa if {linear_form(w, b)} > 0")
    if args.out:
        path = model.plot_history(Path(args.out) / "curves.png", title="perceptron: iris setosa vs others")
        print(f"wrote {path}")
    print(f"test accuracy: {result['accuracy']:.4f}")
    return {**result, "model": model, "predictions": model.predict_classes(Xte).ravel(), "labels": yte,
            "train_accuracy": model.evaluate(Xtr, ytr)["accuracy"], "weights": np.append(w, b)}  # fmt: skip


if __name__ == "__main__":
    main()
