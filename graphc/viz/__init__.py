"""Graphviz drawings of graphs: forward, backward and fused kernels.

The entry point is `graphc.render` (graphc.viz.render.render); the submodule is not shadowed
by the function so that `graphc.viz.render.build` and its style tables stay reachable.
"""
