"""The op library: one module per family, each op declared once (see registry.OpDef)."""

from graphc.ops import api  # noqa: F401  (importing registers every op)
from graphc.ops.registry import Kind, OpDef, all_ops, get, lowering, register  # noqa: F401
