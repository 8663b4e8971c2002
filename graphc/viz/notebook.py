"""Jupyter display of graphs, compiled steps and models (their `_repr_mimebundle_`): the
training-step drawing as SVG when Graphviz's `dot` is installed, the text form otherwise."""

import shutil


def text_form(obj) -> str:
    """What a notebook shows without dot: a Graph's text form, a compiled step's graph text, a
    Model's summary (or its repr)."""
    from graphc.ir.graph import Graph

    if isinstance(obj, Graph):
        return obj.text()
    summary = getattr(obj, "summary", None)
    if callable(summary) and not hasattr(obj, "kernels"):  # a Model's summary table
        return str(summary())
    graph = getattr(obj, "graph", None)
    return graph.text() if isinstance(graph, Graph) else repr(obj)


def mimebundle(obj, include=None, exclude=None) -> dict:
    """{mime type: data}: 'text/plain' always, 'image/svg+xml' when dot is installed."""
    bundle = {"text/plain": text_form(obj)}
    if shutil.which("dot") is not None:
        from graphc.viz.render import dot_source
        from graphc.viz.write import pipe

        svg = pipe(dot_source(obj), "svg")
        if svg is not None:
            bundle["image/svg+xml"] = svg.decode("utf-8")
    if include is not None:
        bundle = {k: v for k, v in bundle.items() if k in include}
    if exclude is not None:
        bundle = {k: v for k, v in bundle.items() if k not in exclude}
    return bundle
