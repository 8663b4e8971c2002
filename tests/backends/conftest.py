import pytest


@pytest.fixture(scope="module", autouse=True)
def _kernel_cache(tmp_path_factory):
    """Compiled kernels go to a cache shared by this test session (content-addressed, so reused),
    never to the user's own cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "graphc-kernel-cache"))
    yield
    mp.undo()
