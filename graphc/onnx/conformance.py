"""ONNX's node tests on graphc: `python -m graphc.onnx.conformance [--backend reference,numba] [--ops Conv,Relu]`.

Runs the node tests onnx ships (onnx.backend.test, built in memory) whose op graphc imports, on
each backend asked for, and prints per op: tests passed / total and why the rest fail. A test
belongs to the op of its node (an `_expanded` test, the function body of an op, to that op).
`--backend onnxruntime` runs the same selection on onnxruntime, for scale.
"""

import argparse
import collections
import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from graphc.errors import GraphcError, UnsupportedModelError


@dataclass(frozen=True)
class NodeTest:
    name: str
    op_type: str
    case: object  # onnx.backend.test.case.test_case.TestCase


@dataclass(frozen=True)
class Outcome:
    test: NodeTest
    passed: bool
    reason: str = ""  # why it failed, short enough for the table


def node_tests(op_types=None) -> list[NodeTest]:
    """ONNX's node tests for the ops graphc imports (or for `op_types`)."""
    from onnx.backend.test.loader import load_node_model_tests

    from graphc.onnx.importer_table import op_types as imported

    wanted = set(imported() if op_types is None else op_types)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_node_model_tests()
    by_name = {c.name: c for c in cases}
    out = []
    for c in cases:
        base = re.sub(r"_expanded(_ver\d+)?$", "", c.name)
        source = by_name.get(base, c)
        if not source.model.graph.node:
            continue
        op = source.model.graph.node[0].op_type
        if op in wanted:
            out.append(NodeTest(c.name, op, c))
    return out


def _normalize(value):
    from onnx import numpy_helper

    return numpy_helper.to_array(value) if hasattr(value, "data_type") else value


def run_test(test: NodeTest, backend: str = "reference") -> Outcome:
    """Run one node test as onnx's runner does (every data set, outputs within its tolerances)."""
    from onnx.backend.test.runner import Runner

    case = test.case
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rep = _prepare(case.model, backend)
            for inputs, refs in case.data_sets:
                outs = rep.run([_normalize(v) for v in inputs])
                Runner.assert_similar_outputs([_normalize(v) for v in refs], outs, case.rtol, case.atol)
    except UnsupportedModelError as exc:
        return Outcome(test, False, "unsupported: " + _short(exc.problems[0].reason if exc.problems else str(exc)))
    except AssertionError as exc:
        first = str(exc).strip().splitlines()
        return Outcome(test, False, "wrong output: " + _short(first[0] if first else "values differ"))
    except GraphcError as exc:
        return Outcome(test, False, f"{type(exc).__name__}: " + _short(str(exc)))
    except Exception as exc:  # a failure of the backend under test: counted, named, never fatal to the run
        return Outcome(test, False, f"{type(exc).__name__}: " + _short(str(exc)))
    return Outcome(test, True)


def _prepare(model, backend: str):
    if backend == "onnxruntime":
        import onnxruntime.backend

        return onnxruntime.backend.prepare(model, "CPU")
    from graphc.onnx.backend import GraphcBackend

    return GraphcBackend.prepare(model, "CPU", backend=backend)


def _short(text: str) -> str:
    dtype = re.search(r"has dtype ([A-Z0-9_]+)", text) or re.match(r"to=([A-Z0-9_]+);", text)
    if dtype:
        return f"dtype {dtype.group(1)}"
    if re.search(r"graphc has 1-D and 2-D \w+, not 3-D", text):
        return "3-D (graphc has 1-D and 2-D)"
    needs = re.search(r"input \d+ \((\w+), '[^']*'\) must be known at import", text)
    if needs:
        return f"{needs.group(1)} computed at run time"
    text = re.sub(r"\s*\(declared at [^)]*\)", "", text.strip().splitlines()[0] if text.strip() else text)
    if len(text) > 110 and " (" in text[:110]:  # an explanation that does not fit: left to the error itself
        text = text[: text[:110].rindex(" (")]
    text = re.sub(r"'[^']*'", "'…'", text) if len(text) > 90 else text
    return text[:110]


def table(results: dict[str, list[Outcome]]) -> str:
    """A Markdown table: per op, passed/total per backend and the reasons of the failures (most common first)."""
    backends = list(results)
    ops = sorted({o.test.op_type for outs in results.values() for o in outs})
    head = "| op | " + " | ".join(backends) + " | why the rest fail |"
    lines = [head, "|" + "---|" * (len(backends) + 2)]
    totals = collections.Counter()
    for op in ops:
        cells, failed = [], {}
        for b in backends:
            outs = [o for o in results[b] if o.test.op_type == op]
            passed = sum(o.passed for o in outs)
            totals[b, "passed"] += passed
            totals[b, "total"] += len(outs)
            cells.append(f"{passed}/{len(outs)}" if outs else "-")
            for o in outs:  # one reason per test (the first backend's), however many backends fail it
                if not o.passed:
                    failed.setdefault(o.test.name, o.reason.removeprefix("unsupported: "))
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {_why(failed.values())} |")
    total = [f"**{totals[b, 'passed']}/{totals[b, 'total']}**" for b in backends]
    lines.append("| **all** | " + " | ".join(total) + " | |")
    # the same, leaving out the tests that fail only for a dtype graphc does not have (float16, uint8, ...)
    typed = []
    for b in backends:
        kept = [o for o in results[b] if not o.reason.startswith("unsupported: dtype ")]
        typed.append(f"{sum(o.passed for o in kept)}/{len(kept)}")
    lines.append("| all but dtype-only failures | " + " | ".join(typed) + " | |")
    return "\n".join(lines)


def _why(reasons) -> str:
    """The failures' reasons, most common first: the dtypes graphc lacks in one entry, then at most three others."""
    reasons = list(reasons)
    dtypes = sorted({r.split(" ", 1)[1] for r in reasons if r.startswith("dtype ")})
    others = collections.Counter(r for r in reasons if not r.startswith("dtype "))
    parts = []
    if dtypes:
        k = sum(r.startswith("dtype ") for r in reasons)
        parts.append(f"dtype {', '.join(dtypes)} ({k})")
    parts += [f"{r} ({k})" if k > 1 else r for r, k in others.most_common(3)]
    rest = sum(others.values()) - sum(k for _, k in others.most_common(3))
    if rest:
        parts.append(f"{rest} more")
    return "; ".join(parts)


def run(backends=("reference",), op_types=None, names=None) -> dict[str, list[Outcome]]:
    tests = node_tests(op_types)
    if names is not None:
        tests = [t for t in tests if t.name in set(names)]
    return {b: [run_test(t, b) for t in tests] for b in backends}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphc.onnx.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="reference,numba", help="comma-separated: reference, numba, onnxruntime")
    parser.add_argument("--ops", default=None, help="comma-separated ONNX op types (default: every op graphc imports)")
    parser.add_argument("--passing", action="store_true", help="list the passing tests' names (one a line) instead")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()]
    ops = None if args.ops is None else [o.strip() for o in args.ops.split(",")]
    results = run(backends, ops)
    if args.passing:
        for o in results[backends[0]]:
            if o.passed:
                print(o.test.name)
        return 0
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
