"""Overfitting, and what closes the gap: a too-large MLP trained on 60 digits.

Run 1, the large model alone: training loss falls towards zero while validation loss turns
and climbs; the curves diverge. Run 2, the same model with dropout and early stopping: it
stops when validation loss stops improving and restores the best weights, so the gap between
training and validation loss is much smaller. Both runs are drawn in one PNG.

    python examples/overfitting.py --epochs 120 --out overfit_out
    graphc render examples/overfitting.py -o large.svg   # build(): run 1's model, untrained
"""

import argparse
from pathlib import Path

import numpy as np

from graphc import nn
from graphc.datasets import load_digits, train_test_split
from graphc.nn.history import plot_histories


def network(width=512, dropout=0.0, name="large"):
    layers = [nn.Dense(width, activation="relu")]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Dense(width, activation="relu"))
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential([*layers, nn.Dense(10)], name=name)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--train-size", type=int, default=60, help="training samples (a small subset)")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default=None, help="folder for curves.png")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def make_model(args, label, dropout):
    return nn.Model(network(args.width, dropout, "large" if not dropout else "regularised"), input_shape=(64,),
                    optimizer=nn.optim.Adam(lr=args.lr), backend=args.backend, seed=args.seed,
                    name=label.replace(" ", "_").replace("+", "and"))  # fmt: skip


def build():
    """Run 1's model (the large one, no dropout), before training (what `graphc render` draws)."""
    return make_model(parse_args([]), "large model", 0.0)


def main(argv=None) -> dict:
    args = parse_args(argv)

    X, y = load_digits(flat=True)
    Xrest, Xtr, yrest, ytr = train_test_split(X, y, test_size=args.train_size, seed=args.seed, stratify=True)
    Xval, Xte, yval, yte = train_test_split(Xrest, yrest, test_size=0.5, seed=args.seed, stratify=True)
    runs = {}
    for label, dropout, patience in (("large model", 0.0, None),
                                     ("dropout + early stopping", args.dropout, args.patience)):  # fmt: skip
        model = make_model(args, label, dropout)
        model.fit(Xtr, ytr, epochs=args.epochs, batch_size=20, validation_data=(Xval, yval),
                  early_stopping=patience, seed=args.seed, progress=not args.quiet)  # fmt: skip
        train, val, test = model.evaluate(Xtr, ytr), model.evaluate(Xval, yval), model.evaluate(Xte, yte)
        runs[label] = {
            "model": model, "history": model.history, "gap": val["loss"] - train["loss"],
            "train_loss": train["loss"], "val_loss": val["loss"], "test_accuracy": test["accuracy"],
            "epochs": len(model.history),
        }  # fmt: skip
        h = model.history
        stopped = f", restored epoch {h.best_epoch} of {len(h)}" if h.best_epoch else ""
        print(f"{label:>26}: train loss {train['loss']:.4f}  validation loss {val['loss']:.4f}  "
              f"gap {runs[label]['gap']:.4f}  test accuracy {test['accuracy']:.4f}{stopped}")  # fmt: skip
    plain = runs["large model"]["history"]
    turn = int(np.nanargmin(plain["val_loss"]))
    print(
        f"large model: validation loss was lowest at epoch {turn + 1} ({plain['val_loss'][turn]:.4f}) "
        f"and ended at {plain['val_loss'][-1]:.4f} while training loss fell to {plain['loss'][-1]:.4f}"
    )
    if args.out:
        path = plot_histories(
            Path(args.out) / "curves.png",
            {k: r["history"] for k, r in runs.items()},
            title=f"overfitting on {len(Xtr)} digits: large model vs dropout + early stopping",
        )
        print(f"wrote {path}")
    best = runs["dropout + early stopping"]
    print(f"test accuracy: {best['test_accuracy']:.4f}")
    return runs


if __name__ == "__main__":
    main()
