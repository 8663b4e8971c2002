"""The legend drawn in the picture: one sample node per role present, and the markers used."""

from graphc.viz.analysis import ROLES
from graphc.viz.style import MEANING, SAVED, STYLE

LEGEND_KEY = ("legend",)


def add_legend(pic, roles, saved: bool, extra=()) -> None:
    """Sample nodes, in a 'legend' cluster, for `roles` (those drawn), the saved-activation
    border when `saved`, and `extra` (label, style) pairs (folded boxes, loops)."""
    from graphc.viz.style import LEGEND_CLUSTER

    pic.cluster(LEGEND_KEY, **LEGEND_CLUSTER)
    names = []
    for role in ROLES:
        if role in roles:
            names.append(pic.node(f"legend_{role}", LEGEND_KEY, label=MEANING[role], fontsize="9", **STYLE[role]))
    if saved:
        attrs = {**STYLE["forward"], **SAVED}
        names.append(
            pic.node(
                "legend_saved",
                LEGEND_KEY,
                label="saved for backward\\n(red border, dashed edge)",
                fontsize="9",
                **attrs,
            )
        )
    for i, (label, attrs) in enumerate(extra):
        names.append(pic.node(f"legend_extra{i}", LEGEND_KEY, label=label, fontsize="9", **attrs))
    # A column, kept in order by invisible edges.
    for a, b in zip(names, names[1:]):
        pic.edges.append((a, b, "legend", {"style": "invis"}))
