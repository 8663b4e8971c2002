"""`graphc info`: what this installation has: graphc's version, the backends that load (and why
one does not), the CPUs seen, the kernel cache's folder and size, and the versions of numba,
numpy and Graphviz's `dot`.

    graphc 0.1.0 (Python 3.11.7)
    backends: reference (NumPy), numba (CPU kernels), cuda: not available (no NVIDIA GPU; ...)
    devices: CPU, 16 cores (16 usable by this process); CUDA: none
    kernel cache: /home/me/.cache/graphc/numba-0.61.2-py311-g1a2b3c (412 files, 3.1 MB)
    numba 0.61.2, numpy 2.2.6, dot 2.43.0
"""

import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from graphc.cli.common import byte_size

# The backends graphc ships, in the order `graphc info` lists them: (name, module, what it runs on).
BUILTIN = (
    ("reference", "graphc.backends.reference", "NumPy"),
    ("numba", "graphc.backends.numba", "CPU kernels"),
    ("cuda", "graphc.backends.cuda", "CUDA kernels"),
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="version, backends, devices, kernel cache and library versions; or what FILE holds",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "file",
        metavar="FILE",
        nargs="?",
        default=None,
        help="a model file (.onnx, or a .py with build() or a .json graph): its inputs, outputs, ops and parameters",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    if getattr(args, "file", None) is not None:
        from graphc.cli.common import report
        from graphc.cli.file_info import file_lines
        from graphc.errors import GraphcError

        try:
            print("\n".join(file_lines(args.file)))
        except GraphcError as exc:
            return report("info", exc)
        return 0
    print("\n".join(info_lines()))
    return 0


def info_lines() -> list[str]:
    import graphc

    return [
        f"graphc {graphc.__version__} (Python {platform.python_version()})",
        "backends: " + ", ".join(backend_lines()),
        f"devices: {cpu_line()}; {cuda_line()}",
        f"kernel cache: {cache_line()}",
        f"numba {_version('numba')}, numpy {_version('numpy')}, dot {dot_version()}",
    ]


def backend_lines() -> list[str]:
    """`name (what)` for a backend that loads, `name: not available (the error)` for one that does not."""
    from graphc.backends import backend_names

    names = backend_names()
    out = []
    for name, module, what in BUILTIN:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            out.append(f"{name}: not available ({type(exc).__name__}: {exc})")
            continue
        if name in names:
            out.append(f"{name} ({what})")
        else:
            why = getattr(sys.modules.get(module), "unavailable_reason", lambda: "it did not register")()
            out.append(f"{name}: not available ({why})")
    out += [name for name in names if name not in {b[0] for b in BUILTIN}]  # registered by other packages
    return out


def cpu_line() -> str:
    total = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    return f"CPU, {total} cores ({usable} usable by this process)"


def cuda_line() -> str:
    """The CUDA device (a simulated one says so), or none and why."""
    try:
        from graphc.backends.cuda import device_line
    except ImportError as exc:
        return f"CUDA: none ({type(exc).__name__}: {exc})"
    return device_line()


def cache_line() -> str:
    """The numba backend's kernel cache folder with its file count and size."""
    try:
        from graphc.backends.numba.cache import cache_dir
    except ImportError:
        return "none (the numba backend is not available)"
    folder = cache_dir()
    if folder is None:
        return "none (no folder could be created; kernels are compiled in memory)"
    files, size = 0, 0
    for path in Path(folder).rglob("*"):
        try:
            if path.is_file():
                files, size = files + 1, size + path.stat().st_size
        except OSError:  # removed while we look, or unreadable
            continue
    return f"{folder} ({files} files, {byte_size(size)})"


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return "not installed"


def dot_version() -> str:
    """The version `dot -V` reports, or "not found" when `dot` is not on PATH."""
    exe = shutil.which("dot")
    if exe is None:
        return "not found"
    try:
        proc = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"at {exe}, but `dot -V` failed ({type(exc).__name__})"
    text = (proc.stderr or proc.stdout).strip()  # dot prints its version on stderr
    m = re.search(r"version\s+(\S+)", text)
    return m.group(1) if m else (text or f"at {exe} (no version printed)")
