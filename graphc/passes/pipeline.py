"""The pass pipeline: named graph -> graph passes, run in order, each switchable off by name.

Order (PASSES), and why:
  1. cse              merge duplicates first, so later patterns see one node per value;
  2. fold             evaluate constant subgraphs (b - 1 in pow's gradient becomes a constant);
  3. loop_prune       drop the scan outputs nothing reads and the body work feeding only them;
  4. loop_hoist       move body work that reads no carry out of its scan (x_t @ W for all steps
                      becomes one product over the stacked xs; W.T is done once);
  5. loop_accumulate  accumulator carries (a weight gradient summed over the steps) become
                      stacked per-step terms and one sum, products computed after the loop;
  6. stabilize        rewrite overflow-prone forms while autodiff's patterns are still intact;
  7. simplify         x*1, x+0, --x, transpose/reshape chains, a sum of per-step products as
                      one product over T*batch rows, ... (cleans up after 2 to 6);
  8. dce              drop everything the earlier passes left unused.
Each pass also rewrites the bodies of loops (sub-graph attributes; passes/bodies.py), nested
bodies first; the loop passes (passes/loops.py) rewrite scans.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from graphc.errors import GraphcError, GraphStructureError
from graphc.ir.graph import Graph
from graphc.ir.node import Node
from graphc.passes.basic import cse, dce, fold
from graphc.passes.bodies import in_bodies
from graphc.passes.loops import loop_accumulate, loop_hoist, loop_prune
from graphc.passes.rewrite import rewrite
from graphc.passes.simplify import simplify
from graphc.passes.stabilize import stabilize

PASSES: dict[str, Callable[[Graph], Graph]] = {
    "cse": in_bodies(cse),
    "fold": in_bodies(fold),
    "loop_prune": loop_prune,
    "loop_hoist": loop_hoist,
    "loop_accumulate": loop_accumulate,
    "stabilize": in_bodies(stabilize),
    "simplify": in_bodies(simplify),
    "dce": in_bodies(dce),
}


@dataclass
class Row:
    stage: str
    nodes_before: int
    nodes_after: int
    seconds: float = 0.0
    kernels_before: int | None = None
    kernels_after: int | None = None


@dataclass
class Summary:
    """Nodes (and, once fusion adds its rows, kernels) before and after each stage."""

    rows: list[Row] = field(default_factory=list)

    def add(self, stage, nodes_before, nodes_after, seconds=0.0, kernels_before=None, kernels_after=None):
        self.rows.append(Row(stage, nodes_before, nodes_after, seconds, kernels_before, kernels_after))

    def __getitem__(self, stage: str) -> Row:
        for r in self.rows:
            if r.stage == stage:
                return r
        raise KeyError(stage)

    def __str__(self):
        kernels = any(r.kernels_after is not None for r in self.rows)
        w = max([12, *(len(r.stage) + 1 for r in self.rows)])
        head = f"{'stage':<{w}}{'nodes':>8}{'->':>4}{'nodes':>8}"
        if kernels:
            head += f"{'kernels':>10}{'->':>4}{'kernels':>9}"
        lines = [head + f"{'ms':>9}"]

        def k(v):
            return "-" if v is None else str(v)

        for r in self.rows:
            line = f"{r.stage:<{w}}{r.nodes_before:>8}{'':>4}{r.nodes_after:>8}"
            if kernels:
                line += f"{k(r.kernels_before):>10}{'':>4}{k(r.kernels_after):>9}"
            lines.append(line + f"{r.seconds * 1e3:>9.2f}")
        if self.rows:
            first, last = self.rows[0], self.rows[-1]
            lines.append(f"{'total':<{w}}{first.nodes_before:>8}{'':>4}{last.nodes_after:>8}")
        return "\n".join(lines)


def check_pass_names(names: Iterable[str]) -> list[str]:
    """Validate pass names; an unknown one raises naming the valid ones."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise GraphcError(
            f"unknown optimization pass {', '.join(map(repr, unknown))}; valid passes: {', '.join(PASSES)}"
        )
    return names


@dataclass(frozen=True)
class Optimized:
    """What the pipeline made: the optimized `graph`, the new nodes standing for the nodes asked
    to be kept (`kept`, in order) and the per-pass `summary` (print it)."""

    graph: Graph
    kept: list[Node]
    summary: Summary


_KEEP = "__graphc_keep_{}"


def run_passes(
    graph: Graph, passes=None, disable=(), trace: Callable[[str], None] | None = None, keep: Iterable[Node] = ()
) -> Optimized:
    """Run `passes` (names, default all of PASSES in order) minus `disable` on a copy of `graph`.

    Returns an Optimized: the new graph, the new nodes of `keep` (nodes of `graph` that must
    survive although no output names them, e.g. compile's extra outputs) and the Summary.
    `trace` (e.g. print) receives a header and the graph's text after each pass. The input
    graph is never modified; the new one shares its `values` and its input, parameter, output
    and update names.
    """
    if not isinstance(graph, Graph):
        hint = " (pass its .graph)" if isinstance(getattr(graph, "graph", None), Graph) else ""
        raise GraphStructureError(f"optimize: expected a Graph, got {type(graph).__name__}{hint}")
    keep = list(keep)
    for n in keep:
        if not isinstance(n, Node) or n.graph is not graph:
            raise GraphStructureError(f"optimize: keep must hold nodes of graph {graph.name!r}, got {n!r}")
    order = list(PASSES) if passes is None else check_pass_names(passes)
    skip = set(check_pass_names(disable))
    graph, mapping = rewrite(graph, with_map=True)  # a copy, whose outputs also hold the kept nodes
    for i, n in enumerate(keep):
        graph.outputs[_KEEP.format(i)] = mapping[n.id]
    summary = Summary()
    if trace is not None:
        trace(f"== input: {len(graph.nodes)} nodes ==\n{graph.text()}")
    for name in order:
        if name in skip:
            continue
        before = len(graph.nodes)
        t0 = time.perf_counter()
        graph = PASSES[name](graph)
        summary.add(name, before, len(graph.nodes), time.perf_counter() - t0)
        if trace is not None:
            trace(f"== after {name}: {before} -> {len(graph.nodes)} nodes ==\n{graph.text()}")
    kept = [graph.outputs.pop(_KEEP.format(i)) for i in range(len(keep))]
    return Optimized(graph, kept, summary)


def optimize(graph: Graph, disable=(), trace=None, verbose: bool = False, passes=None) -> Graph:
    """A new, optimized Graph computing the same outputs and updates as `graph`.

    It shares `graph.values` (so updates applied by a compiled step reach the user's arrays)
    and has the same input, parameter, output and update names. `disable` names passes to
    skip; `trace=print` (or verbose=True) prints the graph after each pass. For the per-pass
    Summary (or to keep nodes no output names) call `run_passes`, which returns an Optimized.
    """
    trace = print if verbose and trace is None else trace
    return run_passes(graph, passes, disable, trace).graph
