"""The main job: `graphc demo --out DIR` (also `python -m graphc demo`)."""

import re
import subprocess
import sys
from pathlib import Path

from graphc.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_trains_and_writes_drawings_and_curves(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epochs", "2", "--backend", "reference", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) >= 0.90  # two epochs already get most digits right
    for name in ("forward.svg", "backward.svg"):
        svg = (out / name).read_text()
        assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    assert "conv2d" in (out / "forward.svg").read_text()
    back = (out / "backward.svg").read_text()
    assert "conv2d_grad_weight" in back or "conv2d_grad" in back
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("wrote") and "curves.png" in line for line in lines)


def test_python_dash_m_graphc_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "graphc", "demo", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout and "--epochs" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "graphc", "demo", "--epochs", "0"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--epochs must be >= 1, got 0" in bad.stderr
