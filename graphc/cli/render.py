"""`graphc render FILE.py|FILE.json|FILE.onnx`: draw a graph, a compiled step or a model as SVG, PNG or PDF.

    graphc render examples/cnn_digits.py --view train --collapse -o cnn_train.svg
    graphc render examples/mlp_digits.py --view backward --fused -o mlp_kernels.svg
    graphc render net.json --view forward --no-shapes -o net.png
    graphc render model.onnx --view forward -o model.svg

FILE.py defines `build()`, returning a Graph, a training graph, a compiled step or an nn.Model
(graphc.cli.loading); FILE.json is a graph saved with `g.save`; FILE.onnx an ONNX model (imported
with gc.onnx.load: its node names are the scopes). The drawing is gc.render's: --view train
(the default: forward, backward and updates laid out apart; forward for an ONNX model, which has
no backward part), forward or backward;
--fused draws the fused kernels of the compiled step (compiling a graph for the numba backend);
--collapse draws one box per layer, --expand LAYER opens that layer and collapses the others;
--no-shapes leaves shapes and dtypes off the edges; --passes / --no-passes draw the graph after
or before the optimization passes (default: after for a compiled step or a model, before for a
graph); past --max-nodes nodes (default 150, 0 for no cap) the drawing is summarised, first
collapsed to one box per layer. Without Graphviz's `dot` only the .gv source is written, with a note saying how to
install it.
"""

import argparse
import sys
import warnings
from pathlib import Path

from graphc.cli.common import CommandError, one_line, report
from graphc.errors import FileWriteError, GraphcError
from graphc.viz.render import MAX_NODES

VIEWS = ("train", "forward", "backward")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "render",
        help="draw a graph, compiled step or model (FILE.py with build(), FILE.json or FILE.onnx)",
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n" + __doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="a .py file defining build(), a graph saved as .json, an .onnx model")
    p.add_argument("--view", default=None, help="train (default; forward for .onnx), forward or backward")
    p.add_argument("--fused", action="store_true", help="draw the fused kernels of the compiled step as clusters")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--collapse", action="store_true", help="one box per layer (name scope)")
    group.add_argument(
        "--expand", metavar="LAYER", default=None, help="draw LAYER in full and collapse the other layers"
    )
    p.add_argument("--no-shapes", dest="shapes", action="store_false", help="no shapes and dtypes on the edges")
    p.add_argument(
        "--passes",
        action="store_true",
        default=None,
        help="draw after the optimization passes (default for a compiled step or a model)",
    )
    p.add_argument(
        "--no-passes",
        dest="passes",
        action="store_false",
        help="draw before the optimization passes (default for a graph)",
    )
    p.add_argument(
        "--max-nodes",
        type=int,
        default=None,
        metavar="N",
        help=f"past N nodes, summarise the drawing (default {MAX_NODES}; 0: draw every node)",
    )
    p.add_argument(
        "-o",
        "--out",
        metavar="OUT",
        default=None,
        help="the drawing: .svg, .png, .pdf or .gv (default: FILE's name and the view, .svg)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        for path in render_file(
            args.file,
            view=args.view,
            fused=args.fused,
            collapse=args.collapse,
            expand=args.expand,
            shapes=args.shapes,
            passes=args.passes,
            out=args.out,
            max_nodes=args.max_nodes,
        ):
            print(f"wrote {path}")
    except GraphcError as exc:
        return report("render", exc)
    return 0


def render_file(
    file, view=None, fused=False, collapse=False, expand=None, shapes=True, passes=None, out=None, max_nodes=None
):
    """Draw what FILE stands for; return the paths written. Bad input is a CommandError naming
    the problem and the fix. view None: train, or forward for an ONNX model. max_nodes: None for
    gc.render's cap, 0 for none."""
    if view is None:
        view = "forward" if Path(file).suffix.lower() == ".onnx" else "train"
    if view not in VIEWS:
        raise CommandError(f"unknown view {view!r}; use --view train, forward or backward")
    if max_nodes is not None and max_nodes < 0:
        raise CommandError(f"--max-nodes must be >= 0 (0: no cap), got {max_nodes}")
    out = Path(out) if out is not None else Path(f"{Path(file).stem}_{view}.svg")
    _check_out(out)
    from graphc.cli.loading import load

    obj = load(file)
    obj, roots = _what_to_draw(obj, fused, passes)
    if view != "forward" and not _has_backward(obj):
        raise CommandError(
            f"{file} gives a graph without a backward part, so there is no {view} view; use "
            "--view forward, or return a training graph or a model from build()"
        )
    import graphc as gc
    from graphc.viz.render import DotNotFoundWarning

    options = {"view": view, "collapse": collapse, "expand": expand, "shapes": shapes, "roots": roots}
    if passes is not None:
        options["passes"] = passes
    if max_nodes is not None:
        options["max_nodes"] = max_nodes or None
    if not fused:
        options["kernels"] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DotNotFoundWarning)
        try:
            paths = gc.render(obj, out, **options)
        except FileWriteError as exc:
            raise CommandError(f"{one_line(exc)}; give -o a path in a folder you can write to") from None
        except GraphcError as exc:
            raise CommandError(one_line(exc).removeprefix("render: ")) from None
    for w in caught:
        if issubclass(w.category, DotNotFoundWarning):
            print(f"graphc render: note: {one_line(w.message)}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return paths


def _check_out(out: Path) -> None:
    """Refuse before any work an output that is a folder or has a suffix gc.render does not write."""
    if out.is_dir():
        raise CommandError(f"-o {str(out)!r} is a folder; give a file name such as {str(out / 'graph.svg')!r}")
    if out.suffix.lower() not in (".svg", ".png", ".pdf", ".gv", ".dot"):
        raise CommandError(f"-o {str(out)!r}: cannot tell the format; give a name ending in .svg, .png, .pdf or .gv")


def _what_to_draw(obj, fused: bool, passes):
    """(object for gc.render, roots or None): a model's training step (its declared graph with
    --no-passes), a graph compiled for numba when --fused asks for kernels."""
    import graphc as gc
    from graphc.backends import backend_names
    from graphc.backends.base import Executable
    from graphc.nn.model import Model

    if fused and passes is False:
        raise CommandError(
            "--fused draws the compiled step's kernels, which are made after the passes; drop --no-passes (or --fused)"
        )
    if isinstance(obj, Model):
        if passes is False:  # the declared graph also holds the evaluation outputs: draw the training step's
            g = obj.graph
            return g, [g.outputs["train/loss"], *g.updates.values()]
        if fused and obj.train_step.kernels is None:
            raise CommandError(
                f"the model's backend {obj.backend!r} does not fuse kernels; build the model with "
                "backend='numba' for --fused"
            )
        return obj, None
    if isinstance(obj, Executable):
        if fused and obj.kernels is None:
            raise CommandError(
                "the compiled step's backend does not fuse kernels; compile it with backend='numba' for --fused"
            )
        return obj, None
    if fused:
        graph = getattr(obj, "graph", obj)  # a TrainingGraph's graph
        if "numba" not in backend_names():
            raise CommandError("--fused needs the numba backend, which is not available here (see graphc info)")
        return gc.compile(graph, "numba"), None
    return obj, None


def _has_backward(obj) -> bool:
    """Whether the graph drawn has backward or update nodes (a Model's, a step's or a training
    graph's `.graph`, or the Graph itself)."""
    from graphc.ir.graph import Graph
    from graphc.ir.phase import Phase

    graph = obj if isinstance(obj, Graph) else obj.graph
    return any(n.phase is not Phase.FORWARD for n in graph.nodes)
