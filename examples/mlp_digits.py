"""A multi-layer perceptron on the bundled 8x8 digits (64 pixels -> 128 -> 64 -> 10).

python examples/mlp_digits.py --epochs 30 --out mlp_out      # >= 96% test accuracy
"""

import argparse
from pathlib import Path

from graphc import nn
from graphc.datasets import load_digits, train_test_split


def network(hidden=(128, 64), dropout=0.1):
    layers = []
    for h in hidden:
        layers += [nn.Dense(h, activation="relu"), nn.Dropout(dropout)]
    return nn.Sequential([*layers, nn.Dense(10)], name="mlp")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--out", default=None, help="folder for curves.png")
    p.add_argument("--backend", default=None, help="reference, numba (default when available), cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)

    X, y = load_digits(flat=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, seed=args.seed, stratify=True)
    model = nn.Model(network(), input_shape=(64,), optimizer=nn.optim.Adam(lr=args.lr), backend=args.backend,
                     seed=args.seed, name="mlp_digits")  # fmt: skip
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, validation_split=0.1, seed=args.seed,
              progress=not args.quiet)  # fmt: skip
    result = model.evaluate(Xte, yte)
    if args.out:
        print(f"wrote {model.plot_history(Path(args.out) / 'curves.png', title='MLP on digits')}")
    print(f"test accuracy: {result['accuracy']:.4f}")
    return {**result, "model": model}


if __name__ == "__main__":
    main()
