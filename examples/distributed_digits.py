"""Data-parallel training of an MLP on the bundled 8x8 digits, over MPI.

    pip install -e '.[mpi]'
    mpiexec -n 2 python -m mpi4py examples/distributed_digits.py    # >= 96% test accuracy
    python examples/distributed_digits.py                            # the same, as a world of one
    graphc render examples/distributed_digits.py -o dp.svg           # build(): the model, untrained

Every rank runs this script on the same data; each trains on its part of every batch
(`--batch-size` samples per rank), the gradients are all-reduced in the training step, and rank
0 alone prints the progress and the results and writes the checkpoint (see docs/distributed.md).
"""

import argparse
import math

from graphc import nn
from graphc.datasets import load_digits, train_test_split


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=16, help="samples per rank per step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--save", default=None, help="checkpoint folder (written by rank 0)")
    p.add_argument("--backend", default=None, help="reference or numba (default: numba when available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def make_model(args):
    net = nn.Sequential([nn.Dense(128, activation="relu"), nn.Dropout(0.2), nn.Dense(10)], name="mlp")
    return nn.Model(net, input_shape=(64,), optimizer=nn.optim.Adam(args.lr), backend=args.backend,
                    seed=args.seed, distributed=True)  # fmt: skip


def build():
    """The model this script trains (its gradients all-reduced), before training (what `graphc render` draws)."""
    return make_model(parse_args([]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    X, y = load_digits(flat=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, seed=args.seed, stratify=True)
    model = make_model(args)
    world = model.world
    say = print if world.is_root else (lambda *a, **k: None)
    global_batch = args.batch_size * world.size
    say(f"{world.size} rank(s) x {args.batch_size} samples = global batch {global_batch}, "
        f"{math.ceil(len(Xtr) / global_batch)} steps an epoch")  # fmt: skip
    model.fit(Xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, progress=not args.quiet)
    result = model.evaluate(Xte, yte)  # sharded over the ranks; the same numbers on each
    if args.save:
        say(f"wrote {model.save(args.save)}")
    say(f"test accuracy: {result['accuracy']:.4f}")
    return {**result, "model": model}


if __name__ == "__main__":
    main()
