"""The IR: immutable nodes with static shapes and dtypes, collected in a Graph."""

from graphc.ir.graph import Graph, current_graph  # noqa: F401
from graphc.ir.node import Attrs, Node  # noqa: F401
