"""The CUDA backend's tests: on a GPU, or on Numba's CUDA simulator in a pytest process of their
own (NUMBA_ENABLE_CUDASIM must be set before Numba is first imported):

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -p no:randomly tests/backends/cuda

Elsewhere (the normal suite on a machine without a GPU) they skip, saying so; the tests marked
`anywhere` (what happens without a device) run everywhere.
"""

import pytest

from graphc.backends.cuda.device import CudaUnavailableError, possible


def _device_missing() -> str | None:
    ok, why = possible()
    if not ok:
        return why
    from graphc.backends.cuda import device

    try:
        device.cuda()
    except CudaUnavailableError as exc:
        return str(exc)
    return None


MISSING = _device_missing()
HERE = __file__.rsplit("/", 1)[0]


def pytest_configure(config):
    config.addinivalue_line("markers", "anywhere: a CUDA-backend test that needs no device")


def pytest_collection_modifyitems(config, items):
    if MISSING is None:
        return
    skip = pytest.mark.skip(
        reason="no CUDA device and no simulator here (CI runs these with NUMBA_ENABLE_CUDASIM=1 "
        f"python -m pytest -p no:randomly tests/backends/cuda): {MISSING}"
    )
    for item in items:
        if str(item.fspath).startswith(HERE) and "anywhere" not in item.keywords:
            item.add_marker(skip)
