"""The `graphc` command (also `python -m graphc`): one module per subcommand.

    graphc demo --out DIR          train a small CNN on the bundled digits, draw its training step
                                   (--task forecast|text: an LSTM forecaster, a character-level GRU)
    graphc render FILE -o OUT.svg  draw FILE.py's build() (a graph, compiled step or model), FILE.json
                                   or FILE.onnx
    graphc info [FILE]             version, backends, devices, kernel cache, library versions; with
                                   FILE, what a model file holds
    graphc --version

Bare `graphc` prints this help. Bad input (a file, an option's value) ends a command with a
one-line error naming the problem and the fix, and exit status 1; a malformed command line gets
argparse's usage message and status 2 (so does `graphc demo --epochs` below 1, as it always has).
"""

import argparse

from graphc.cli import demo as _demo_command
from graphc.cli import info as _info_command
from graphc.cli import render as _render_command
from graphc.cli.demo import demo, demo_network, draw_training_step

COMMANDS = (_demo_command, _render_command, _info_command)


def parser() -> argparse.ArgumentParser:
    import graphc

    p = argparse.ArgumentParser(prog="graphc", description="graphc: a computation-graph compiler for deep learning")
    p.add_argument("--version", action="version", version=f"graphc {graphc.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return 0
    return args.run(args)


__all__ = ["main", "parser", "demo", "demo_network", "draw_training_step"]
