"""dot lays out every view of every example's build() (what `graphc render` draws) without error."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

from graphc.viz import render as viz
from tests.viz.dotread import HAVE_DOT

EXAMPLES = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "examples").glob("*.py"))
VIEWS = [
    {"view": "train"}, {"view": "forward"}, {"view": "backward"}, {"view": "train", "collapse": True},
    {"view": "train", "passes": True}, {"view": "train", "passes": False, "fold_updates": False, "max_nodes": 400},
    {"view": "backward", "collapse": True, "shapes": False},
]  # fmt: skip


def build(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", Path(viz.__file__).resolve().parents[2]
                                                  / "examples" / f"{name}.py")  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build()


@pytest.mark.skipif(not HAVE_DOT, reason="needs the Graphviz dot program")
@pytest.mark.parametrize("name", EXAMPLES)
def test_dot_lays_out_every_view(name):
    assert len(EXAMPLES) >= 6
    obj = build(name)
    for options in VIEWS:
        source = viz.dot_source(obj, **options)
        proc = subprocess.run(["dot", "-Tsvg", "-o", "/dev/null"], input=source, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0 and "Error" not in proc.stderr, (name, options, proc.stderr[:500])
