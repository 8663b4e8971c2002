"""`graphc info`, `graphc --version` and bare `graphc` (issue 9, item 6)."""

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy

import graphc
from graphc.cli import info, main
from graphc.cli.common import byte_size

ROOT = Path(__file__).resolve().parents[2]


def run_info(capsys) -> list[str]:
    assert main(["info"]) == 0
    return capsys.readouterr().out.splitlines()


def test_info_says_version_backends_devices_cache_and_library_versions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    lines = run_info(capsys)
    assert len(lines) == 5
    assert re.fullmatch(rf"graphc {re.escape(graphc.__version__)} \(Python 3\.\d+\.\d+\)", lines[0])
    assert lines[1].startswith("backends: reference (NumPy), numba (CPU kernels), cuda")
    assert re.fullmatch(r"devices: CPU, \d+ cores \(\d+ usable by this process\); CUDA: .+", lines[2])
    if "cuda (CUDA kernels)" not in lines[1]:  # no GPU, no simulator: why, and no device
        assert lines[1].endswith(
            "cuda: not available (no NVIDIA GPU; NUMBA_ENABLE_CUDASIM=1 runs Numba's CUDA simulator)"
        )
        assert lines[2].endswith("; CUDA: none")
    folder = next((tmp_path / "cache").iterdir())  # the numba backend's folder for this numba and python
    assert lines[3] == f"kernel cache: {folder} (0 files, 0 bytes)"
    (folder / "gk_x.py").write_text("x = 1\n")  # 6 bytes
    assert run_info(capsys)[3] == f"kernel cache: {folder} (1 files, 6 bytes)"
    assert lines[4].startswith(f"numba {numba.__version__}, numpy {numpy.__version__}, dot ")


def test_info_gives_dot_s_version_or_not_found(monkeypatch, capsys):
    if shutil.which("dot"):
        proc = subprocess.run(["dot", "-V"], capture_output=True, text=True)
        version = re.search(r"version (\S+)", proc.stderr).group(1)
        assert run_info(capsys)[4].endswith(f", dot {version}")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    assert run_info(capsys)[4].endswith(", dot not found")


def test_info_says_why_a_backend_is_not_available(monkeypatch, capsys):
    real = importlib.import_module

    def without_numba(name, *args):
        if name == "graphc.backends.numba":
            raise ImportError("No module named 'numba'")
        return real(name, *args)

    monkeypatch.setattr(info.importlib, "import_module", without_numba)
    lines = run_info(capsys)
    assert lines[1].startswith(
        "backends: reference (NumPy), numba: not available (ImportError: No module named 'numba'), "
    )


def test_sizes_read_as_people_write_them():
    assert [byte_size(n) for n in (0, 999, 1000, 5_700_000, 3 * 10**9, 4 * 10**12)] == [
        "0 bytes", "999 bytes", "1.0 kB", "5.7 MB", "3.0 GB", "4000.0 GB",
    ]  # fmt: skip


def test_version_and_bare_graphc_prints_help(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out == f"graphc {graphc.__version__}\n"
    assert main([]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: graphc [-h] [--version] COMMAND ...")
    for command in ("demo", "render", "info"):
        assert re.search(rf"^\s+{command}\s+\w", text, re.M), command


def test_the_graphc_command_without_arguments_prints_help_and_succeeds():
    proc = subprocess.run([sys.executable, "-m", "graphc"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: graphc")
