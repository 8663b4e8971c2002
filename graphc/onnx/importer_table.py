"""The complete import table: every rule family imported (each registers its rules on import)."""

from graphc.onnx import (  # noqa: F401
    import_rules_elementwise,
    import_rules_nn,
    import_rules_reduce,
    import_rules_rnn,
    import_rules_shape,
)
from graphc.onnx.importer_registry import declared_op_types


def op_types() -> list[str]:
    """Every ONNX op type graphc imports into its graph (for the conformance table)."""
    return declared_op_types()


def folded_op_types() -> list[str]:
    """The ONNX op types graphc computes at import only, on values known then (shape arithmetic)."""
    return declared_op_types(folds_only=True)
