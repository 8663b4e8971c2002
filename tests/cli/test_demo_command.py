"""The main job: `graphc demo --out DIR` (also `python -m graphc demo`): trains, prints the test
accuracy last, writes forward, backward and training-step drawings and the curves."""

import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from graphc.cli import main
from graphc.viz.render import DotNotFoundWarning

ROOT = Path(__file__).resolve().parents[2]


def test_demo_trains_and_writes_drawings_and_curves(tmp_path, capsys):
    """With Graphviz's `dot` the drawings are .svg files; without it (it is optional), .gv
    sources only, with a DotNotFoundWarning, and the demo still succeeds."""
    out = tmp_path / "demo"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["demo", "--out", str(out), "--epochs", "2", "--backend", "reference", "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = re.fullmatch(r"test accuracy: (0\.\d{4}|1\.0000)", lines[-1])
    assert m, lines[-1]
    assert float(m.group(1)) >= 0.90  # two epochs already get most digits right
    no_dot = [w for w in caught if issubclass(w.category, DotNotFoundWarning)]
    if shutil.which("dot"):
        ext = "svg"
        assert not no_dot
        for name in ("forward.svg", "backward.svg", "train.svg"):
            svg = (out / name).read_text()
            assert svg.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg
    else:
        ext = "gv"
        assert len(no_dot) == 3  # one per drawing
        assert not list(out.glob("*.svg"))
        for name in ("forward.gv", "backward.gv", "train.gv"):
            assert (out / name).read_text().lstrip().startswith("digraph")
    assert "conv2d" in (out / f"forward.{ext}").read_text()
    back = (out / f"backward.{ext}").read_text()
    assert "conv2d_grad_weight" in back or "conv2d_grad" in back
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wrote = [line.removeprefix("wrote ") for line in lines if line.startswith("wrote ")]
    assert sorted(Path(w).name for w in wrote) == ["backward." + ext, "curves.png", "forward." + ext, "train." + ext]


def test_python_dash_m_graphc_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "graphc", "demo", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--out" in proc.stdout and "--epochs" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "graphc", "demo", "--epochs", "0"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "--epochs must be >= 1, got 0" in bad.stderr


def test_bad_epochs_prints_the_message_without_the_usage_line(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "graphc demo: error: --epochs must be >= 1, got 0\n"


def test_backend_help_lists_only_backends_that_exist(capsys):
    from graphc.backends import backend_names

    try:
        main(["demo", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--backend BACKEND reference or numba (default: numba when available)" in text
    assert sorted(backend_names()) == ["numba", "reference"]  # the help lists them all
    assert "cuda" not in text.lower()
