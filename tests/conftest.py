import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # lets tests import gradcheck
import pytest


@pytest.fixture(scope="session", autouse=True)
def _kernel_cache(tmp_path_factory):
    """Every test compiles into one cache of this session, never the user's ~/.cache/graphc
    (content-addressed, so kernels are shared between tests; child processes inherit it)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "graphc-kernel-cache"))
    yield
    mp.undo()
