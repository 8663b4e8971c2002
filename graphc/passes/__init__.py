"""Optimization passes: graph -> graph rewrites run before fusion (pipeline.PASSES gives the order).

Usage: `g2 = optimize(g, disable=("fold",), trace=print)`; `print(run_passes(g).summary)` for the
node counts and time per pass.
"""

from graphc.passes.basic import cse, dce, fold
from graphc.passes.pipeline import PASSES, Optimized, Summary, check_pass_names, optimize, run_passes
from graphc.passes.rewrite import Rewriter, rewrite, table_rule
from graphc.passes.simplify import SIMPLIFY_RULES, simplify
from graphc.passes.stabilize import STABILIZE_RULES, stabilize

__all__ = [
    "optimize",
    "run_passes",
    "Optimized",
    "PASSES",
    "Summary",
    "check_pass_names",
    "rewrite",
    "Rewriter",
    "table_rule",
    "dce",
    "cse",
    "fold",
    "simplify",
    "stabilize",
    "SIMPLIFY_RULES",
    "STABILIZE_RULES",
]
