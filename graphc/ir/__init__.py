"""The IR: immutable nodes with static shapes and dtypes, collected in a Graph."""

from graphc.ir.graph import Graph, current_graph  # noqa: F401
from graphc.ir.node import Attrs, Node, TupleNode, TupleType  # noqa: F401
from graphc.ir.phase import Phase  # noqa: F401
