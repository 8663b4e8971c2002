"""Graphviz drawings of graphs, compiled steps and models: forward, backward, the training step,
collapsed layers, fused kernels, loops; and their Jupyter display.

The entry point is `graphc.render` (graphc.viz.render.render); `dot_source` gives the DOT text.
The submodule `render` is not shadowed by the function, so that `graphc.viz.render.build` and
its style tables stay reachable. Importing this package registers the notebook display that
Graph, compiled steps and Model delegate their `_repr_mimebundle_` to.
"""

from graphc.ir.graph import use_display
from graphc.viz import notebook

use_display(notebook.mimebundle)


def dot_source(obj, **options) -> str:
    """The DOT text of a drawing of `obj`; see graphc.viz.render.dot_source."""
    from graphc.viz.render import dot_source as _dot_source

    return _dot_source(obj, **options)


__all__ = ["dot_source"]
