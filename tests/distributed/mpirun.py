"""Launching the MPI programs of tests/distributed/programs under `mpiexec -n N python -m mpi4py`.

`python -m mpi4py` makes an uncaught exception on one rank abort every rank (MPI_Abort) instead
of leaving the others waiting in a collective; each launch also has a timeout, so a hang fails
the test instead of stalling CI. Tests skip, saying why, where mpi4py or mpiexec is missing
(`pip install -e '.[mpi]'` brings both).
"""

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
TIMEOUT = 240  # seconds for one launch (compiling on a cold kernel cache included)


def mpiexec() -> str | None:
    """The mpiexec beside this Python (the pip `mpich` package puts it there), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def missing() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e '.[mpi]')"
    if mpiexec() is None:
        return "no mpiexec (pip install -e '.[mpi]' installs MPICH's)"
    return None


needs_mpi = pytest.mark.skipif(missing() is not None, reason=missing() or "")


def launch(program: str, *args, n: int = 2, timeout: float = TIMEOUT, module: bool = False, runner: bool = True):
    """Run PROGRAM (a file in programs/, or with module=True a module such as graphc) on n ranks,
    under `python -m mpi4py` unless runner=False; returns the CompletedProcess (stdout and stderr
    as text). The graphc of this checkout runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    target = ["-m", program] if module else [str(PROGRAMS / program)]
    cmd = [mpiexec(), "-n", str(n), sys.executable, *(["-m", "mpi4py"] if runner else []), *target, *map(str, args)]
    # A session of its own: what mpiexec signals when a rank aborts or dies (its process group)
    # never reaches the test runner's workers, and a launch past its timeout is killed whole.
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, stdout=pipe, stderr=pipe, text=True, env=env, cwd=str(ROOT), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ok(proc) -> None:
    """Assert the launch exited 0, showing its output if not."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    )
