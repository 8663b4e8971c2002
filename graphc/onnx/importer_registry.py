"""The ONNX import table: one rule per ONNX op type and opset range, declared with @onnx_op.

A rule is a function of a NodeContext (the ONNX node being imported: its attributes, its inputs
as graphc nodes or as values known at import) returning the node's outputs: graphc nodes built
through the public op functions, or Const values folded at import (shape computations).
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graphc.errors import GraphcError


class Unsupported(GraphcError):
    """Raised by a rule for a node it cannot import; the importer lists every such node in one error."""


class NeedsValue(Unsupported):
    """A rule needs an input's value at import (a shape, axes, pads) but it is computed when the graph runs."""

    def __init__(self, msg: str, input_name: str):
        super().__init__(msg)
        self.input_name = input_name


@dataclass(frozen=True)
class Const:
    """A value known at import: an initializer of an integer type, a Constant node or a folded result.

    `value` is an ndarray; a shape read from a symbolic dimension holds the dimension's name (a
    str) at that position (an object array), so Shape -> Gather -> Concat -> Reshape chains keep
    symbolic batch sizes."""

    value: np.ndarray

    @property
    def symbolic(self) -> bool:
        return self.value.dtype == object and any(isinstance(v, str) for v in self.value.flat)


@dataclass(frozen=True)
class Rule:
    """How to import one ONNX op type from opset `since` on (until the next rule of that op type).

    attrs: the attributes the rule reads; a node setting any other is reported as unsupported.
    fold: whether a node whose inputs are all known at import is evaluated at import (shape
    computations); False for rules that must stay in the graph.
    folds_only: the op has no graphc equivalent; the rule computes it (with NumPy) on values known
    at import only, as shape computations need (Floor, Ceil, ReduceProd ...)."""

    op_type: str
    since: int
    build: Callable
    attrs: frozenset
    fold: bool = True
    folds_only: bool = False


_RULES: dict[str, list[Rule]] = {}


def onnx_op(op_type: str, since: int = 1, attrs=(), fold: bool = True, folds_only: bool = False):
    """Decorator: `fn(n: NodeContext)` imports ONNX `op_type` nodes of opsets >= since (until the
    rule with the next `since` of the same op type)."""

    def deco(fn):
        rules = _RULES.setdefault(op_type, [])
        if any(r.since == since for r in rules):
            raise ValueError(f"ONNX op {op_type} has two import rules from opset {since}")
        rules.append(Rule(op_type, since, fn, frozenset(attrs), fold, folds_only))
        rules.sort(key=lambda r: r.since)
        return fn

    return deco


def rule_for(op_type: str, opset: int) -> Rule | None:
    """The rule importing op_type in `opset` (the latest one declared from an opset <= it), else None."""
    found = None
    for r in _RULES.get(op_type, ()):
        if r.since <= opset:
            found = r
    return found


def first_opset(op_type: str) -> int | None:
    rules = _RULES.get(op_type)
    return rules[0].since if rules else None


def declared_op_types(folds_only: bool = False) -> list[str]:
    """The ONNX op types with a rule among the rule modules imported so far (see importer_table):
    those graphc computes, or (folds_only=True) those it computes on values known at import only."""
    return sorted(op for op, rules in _RULES.items() if rules[-1].folds_only == folds_only)
