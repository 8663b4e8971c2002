"""Reading and writing graphs (JSON + .npz, atomically, no pickles)."""

from graphc.io import graph_file
from graphc.io.graph_file import load_graph, save_graph  # noqa: F401
from graphc.ir.graph import use_file_format

use_file_format(graph_file)  # Graph.save and Graph.load write and read through this package
