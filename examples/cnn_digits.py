"""A convolutional network on the bundled 8x8 digits.

conv 3x3 (32) -> batch norm -> relu -> max-pool 2 -> conv 3x3 (64) -> batch norm -> relu ->
max-pool 2 -> dropout -> dense 128 relu -> dropout -> dense 10, trained with Adam, a cosine
learning-rate decay and seeded sub-pixel shifts of the training images (augment=random_shift).

    python examples/cnn_digits.py --out cnn_out      # >= 98% test accuracy (0.989-0.997 on seeds 0-4)
    graphc render examples/cnn_digits.py --collapse -o cnn.svg   # build(): the model, untrained
"""

import argparse
import math
from pathlib import Path

from graphc import nn
from graphc.datasets import load_digits, train_test_split
from graphc.nn.augment import random_shift


def network(width=32, hidden=128, dropout=0.3):
    return nn.Sequential([
        nn.Conv2D(width, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Conv2D(2 * width, 3, padding=1), nn.BatchNorm2D(), nn.Activation("relu"), nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        *([nn.Dense(hidden, activation="relu"), nn.Dropout(dropout)] if hidden else []),
        nn.Dense(10),
    ], name="cnn")  # fmt: skip


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--width", type=int, default=32, help="channels of the first conv layer")
    p.add_argument("--hidden", type=int, default=128, help="units of the hidden dense layer (0: none)")
    p.add_argument("--shift", type=float, default=0.5, help="max random shift of training images, pixels (0: off)")
    p.add_argument("--out", default=None, help="folder for curves.png")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def data(seed):
    X, y = load_digits()
    return train_test_split(X, y, test_size=0.2, seed=seed, stratify=True)


def make_model(args, train_samples):
    steps = args.epochs * math.ceil(round(train_samples * 0.9) / args.batch_size)  # for the cosine decay
    optimizer = nn.optim.Adam(lr=args.lr, schedule=nn.schedules.CosineDecay(steps))
    return nn.Model(network(args.width, args.hidden), input_shape=(1, 8, 8), optimizer=optimizer,
                    backend=args.backend, seed=args.seed, name="cnn_digits")  # fmt: skip


def build():
    """The model `python examples/cnn_digits.py` trains, before training (what `graphc render` draws)."""
    args = parse_args([])
    return make_model(args, len(data(args.seed)[0]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    Xtr, Xte, ytr, yte = data(args.seed)
    model = make_model(args, len(Xtr))
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, validation_split=0.1, seed=args.seed,
              augment=random_shift(args.shift) if args.shift else None, progress=not args.quiet)  # fmt: skip
    result = model.evaluate(Xte, yte)
    if args.out:
        print(f"wrote {model.plot_history(Path(args.out) / 'curves.png', title='CNN on digits')}")
    print(f"test accuracy: {result['accuracy']:.4f}")
    return {**result, "model": model}


if __name__ == "__main__":
    main()
