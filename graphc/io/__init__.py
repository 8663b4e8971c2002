"""Reading and writing graphs (JSON + .npz, atomically, no pickles)."""

from graphc.io.graph_file import load_graph, save_graph  # noqa: F401
