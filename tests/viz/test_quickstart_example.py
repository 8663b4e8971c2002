"""examples/quickstart.py runs end to end: text, gradients, HVP, save/load, drawings."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "quickstart.py"


def test_quickstart_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("quickstart_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "graph quickstart(x: f32[batch,4], t: f32[batch,1])" in text and "# bwd of %" in text
    assert "reloaded graph identical: True" in text
    hvp, fd = (np.array(re.search(rf"{k}:\s+\[([^\]]*)\]", text).group(1).split(), float)
               for k in ("v = ones\\)", "check"))  # fmt: skip
    assert hvp.shape == (8,) and np.abs(hvp).max() > 0.01
    np.testing.assert_allclose(hvp, fd, atol=2e-3)
    out = tmp_path / "out"
    arrays = json.loads((out / "quickstart.json").read_text())["arrays"]  # the arrays file the JSON names
    assert (out / arrays).exists() and arrays.endswith(".npz")
    assert (out / "forward.gv").exists() and (out / "backward.gv").exists()
    if shutil.which("dot"):
        assert "hexagon" not in (out / "forward.gv").read_text() and (out / "backward.svg").exists()
