"""The op library: one module per family, each op declared once (see registry.OpDef)."""

from graphc.ir.node import bind_ops
from graphc.ops import api  # importing it registers every op
from graphc.ops.registry import Kind, OpDef, all_ops, get, lowering, register  # noqa: F401

bind_ops(get, api)  # nodes find their OpDef and their operators' functions here
