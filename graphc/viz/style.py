"""How a drawing shows meaning: node styles by role, markers, edge kinds and cluster styles.

The legend (graphc.viz.legend) is drawn from these tables, so the picture and its key agree.
"""

# role -> node attributes. Backward work differs from forward work in colour and shape.
STYLE = {
    "input": {"shape": "ellipse", "style": "filled", "fillcolor": "#bcd9f5"},
    "param": {"shape": "cylinder", "style": "filled", "fillcolor": "#c5e8b7"},
    "state": {"shape": "cylinder", "style": "filled", "fillcolor": "#dcdcdc"},
    "const": {"shape": "note", "style": "filled", "fillcolor": "#f2f2f2"},
    "forward": {"shape": "box", "style": "rounded,filled", "fillcolor": "#fff2cc"},
    "loss": {"shape": "doubleoctagon", "style": "filled", "fillcolor": "#ffb347"},
    "backward": {"shape": "hexagon", "style": "filled", "fillcolor": "#f4c7c3"},
    "gradient": {"shape": "hexagon", "style": "filled,bold", "fillcolor": "#e06666", "fontcolor": "white"},
    "update": {"shape": "hexagon", "style": "filled", "fillcolor": "#eadcf5"},
}

# What each role means, for the legend.
MEANING = {
    "input": "input (fed each step)",
    "param": "parameter (trained)",
    "state": "state (optimizer moments, running statistics)",
    "const": "constant",
    "forward": "forward op",
    "loss": "loss",
    "backward": "backward op",
    "gradient": "gradient of a parameter",
    "update": "parameter update (optimizer)",
}

OUTPUT = {"penwidth": "2.5", "peripheries": "2"}
UPDATE_RESULT = {"fillcolor": "#d9c2f0", "penwidth": "2"}
SAVED = {"color": "#d62728", "penwidth": "2.5"}


def marked(role: str, label: str, gradient_of=None, outputs=(), updates=(), saved=False) -> tuple[str, dict]:
    """A value's label and attributes with its marks (full and collapsed drawings alike): the
    parameter it is the gradient of, the outputs it is, the variables it updates, saved for backward."""
    attrs = dict(STYLE[role])
    if gradient_of is not None:
        label += f"\\n∇ {gradient_of}"
    if outputs:
        attrs.update(OUTPUT)
        label += "\\n→ " + ", ".join(outputs)
    if updates:
        attrs.update(UPDATE_RESULT)
        label += "\\n⇒ " + ", ".join(updates)
    if saved:
        attrs.update(SAVED)
        label += "\\n(saved for backward)"
    return label, attrs


# edge kind -> attributes. No edge uses constraint=false (dot 2.43 with newrank fails on such
# edges between clusters, "trouble in init_rank"): an edge that points against the flow is
# written from head to tail with dir=back instead (REVERSED), and weight 0 keeps it from
# pulling the layout.
EDGE = {
    "data": {},
    "grad": {"color": "#c0392b", "fontcolor": "#c0392b", "penwidth": "1.6"},
    "saved": {"color": "#d62728", "style": "dashed", "weight": "0"},
    "read": {"color": "#bbbbbb", "style": "dotted", "weight": "0", "arrowhead": "none"},
    "update": {"color": "#7b3fb5", "style": "dashed", "weight": "0", "fontcolor": "#7b3fb5"},
    "pair": {"color": "#e06666", "style": "dotted", "weight": "0", "dir": "none"},
    "loop": {"color": "#1f77b4", "style": "bold", "weight": "0", "fontcolor": "#1f77b4", "penwidth": "2"},
}

REVERSED = ("update", "loop")  # written head -> tail with dir=back: they point back up the flow

KERNEL_CLUSTER = {"style": "dashed,rounded", "color": "#1f77b4", "penwidth": "2", "fontcolor": "#1f77b4"}
SCOPE_CLUSTER = {"style": "rounded", "color": "#999999", "fontcolor": "#555555"}
LOOP_CLUSTER = {"style": "rounded,bold", "color": "#1f77b4", "fontcolor": "#1f77b4", "bgcolor": "#f3f8fd"}
PART_CLUSTER = {
    "forward": {"style": "rounded", "color": "#c9b458", "fontcolor": "#8a7a20", "label": "forward pass"},
    "backward": {"style": "rounded", "color": "#c0392b", "fontcolor": "#c0392b", "label": "backward pass (gradients)"},
    "update": {"style": "rounded", "color": "#7b3fb5", "fontcolor": "#7b3fb5", "label": "parameter updates"},
}
LEGEND_CLUSTER = {"style": "rounded", "color": "#cccccc", "fontcolor": "#555555", "label": "legend"}
