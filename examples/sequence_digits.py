"""Sequence classification: the bundled 8x8 digits read row by row, 8 steps of 8 pixels, by a GRU.

The GRU reads the rows top to bottom; a Dense layer classifies its last state. Adam with a
cosine learning-rate decay; 20% of the digits (stratified) are the test set.

    python examples/sequence_digits.py                      # >= 95% test accuracy (0.975-0.989 on seeds 0-4)
    python examples/sequence_digits.py --cell lstm          # the same with an LSTM (0.967-0.975)
    graphc render examples/sequence_digits.py -o gru.svg    # build(): the model, untrained
"""

import argparse
import math
from pathlib import Path

from graphc import nn
from graphc.datasets import train_test_split
from graphc.datasets_sequences import load_digit_sequences

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--cell", choices=sorted(CELLS), default="gru")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--out", default=None, help="folder for curves.png")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def data(seed):
    X, y = load_digit_sequences()
    return train_test_split(X, y, test_size=0.2, seed=seed, stratify=True)


def make_model(args, train_samples):
    steps = args.epochs * math.ceil(round(train_samples * 0.9) / 32)  # for the cosine decay
    optimizer = nn.optim.Adam(args.lr, clip_norm=1.0, schedule=nn.schedules.CosineDecay(steps))
    net = nn.Sequential([CELLS[args.cell](args.units), nn.Dense(10)], name=f"{args.cell}_classifier")
    return nn.Model(net, input_shape=(8, 8), optimizer=optimizer, backend=args.backend, seed=args.seed,
                    name="sequence_digits")  # fmt: skip


def build():
    """The model `python examples/sequence_digits.py` trains, before training (what `graphc render` draws)."""
    args = parse_args([])
    return make_model(args, len(data(args.seed)[0]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    Xtr, Xte, ytr, yte = data(args.seed)
    model = make_model(args, len(Xtr))
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=32, validation_split=0.1, seed=args.seed,
              progress=not args.quiet)  # fmt: skip
    result = model.evaluate(Xte, yte)
    if args.out:
        title = f"{args.cell.upper()} on digits read row by row"
        print(f"wrote {model.plot_history(Path(args.out) / 'curves.png', title=title)}")
    print(f"test accuracy: {result['accuracy']:.4f}")
    return {**result, "model": model}


if __name__ == "__main__":
    main()
