"""docs/nn.md says what exists: its first example runs as written, and its lists of activation
names and Model losses are the code's (issue 10, items 21 and 25)."""

import re
from pathlib import Path

from graphc import nn
from graphc.nn.model import LOSSES

DOC = (Path(__file__).resolve().parents[2] / "docs" / "nn.md").read_text()


def test_the_first_example_runs_in_a_fresh_namespace():
    first = re.search(r"```python\n(.*?)```", DOC, re.S).group(1)
    namespace = {}
    exec(compile(first, "docs/nn.md", "exec"), namespace)  # no name it uses is left undefined
    assert namespace["logits"].type_str == "f32[batch,10]"


def test_activation_names_and_losses_are_listed():
    listed = re.search(r"Activation names \(.*?\):\n(.*?) and\n", DOC, re.S).group(1)
    assert re.findall(r"`(\w+)`", listed) == list(nn.ACTIVATIONS)
    table = [row.split("|")[1].strip() for row in DOC.splitlines() if row.startswith('| `"')]
    assert [re.search(r'"(\w+)"', cell).group(1) for cell in table] == list(LOSSES)
