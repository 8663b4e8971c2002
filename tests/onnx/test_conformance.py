"""ONNX's own node tests (onnx.backend.test, built in memory) on graphc through graphc.onnx.backend.

Reference backend: every node test of every op graphc imports runs; each test listed in
conformance_passing.txt (written by `python -m graphc.onnx.conformance --backend reference --passing`)
must pass, op by op. Numba backend: a representative subset (one or two per rule family), since each
test compiles its kernels; the full table on both backends is in docs/onnx.md.
"""

import collections
from pathlib import Path

import pytest

from graphc.onnx.conformance import node_tests, run_test

PASSING = Path(__file__).with_name("conformance_passing.txt").read_text().split()

NUMBA_SUBSET = [
    "test_conv_with_strides_padding",
    "test_convtranspose",
    "test_gemm_all_attributes",
    "test_maxpool_2d_pads",
    "test_averagepool_2d_ceil",
    "test_batchnorm_example",
    "test_lrn",
    "test_softmax_axis_1",
    "test_layer_normalization_4d_axis0",
    "test_reduce_mean_keepdims_example",
    "test_argmax_default_axis_example",
    "test_slice",
    "test_concat_2d_axis_0",
    "test_gather_0",
    "test_where_example",
    "test_lstm_defaults",
]


@pytest.fixture(scope="module")
def tests_by_op():
    by_op = collections.defaultdict(list)
    for t in node_tests():
        by_op[t.op_type].append(t)
    return by_op


def _ops():
    from graphc.onnx.importer_table import op_types

    return op_types()


def test_the_recorded_tests_exist_and_every_imported_op_has_node_tests(tests_by_op):
    names = {t.name for ts in tests_by_op.values() for t in ts}
    assert set(PASSING) <= names
    assert set(NUMBA_SUBSET) <= set(PASSING)
    assert len(names) > 900 and len(tests_by_op) > 100


@pytest.mark.parametrize("op", _ops())
def test_node_tests_on_reference(op, tests_by_op):
    expected = set(PASSING)
    outcomes = [run_test(t, "reference") for t in tests_by_op.get(op, [])]
    regressed = {o.test.name: o.reason for o in outcomes if o.test.name in expected and not o.passed}
    assert regressed == {}


@pytest.mark.parametrize("name", NUMBA_SUBSET)
def test_node_tests_on_numba(name, tests_by_op):
    (test,) = [t for ts in tests_by_op.values() for t in ts if t.name == name]
    outcome = run_test(test, "numba")
    assert outcome.passed, outcome.reason
