"""tests/backends/test_all_backends.py, unchanged, on the cuda backend (the simulator's pytest
process collects only tests/backends/cuda; on a GPU the normal suite runs them there too)."""

import pytest

from tests.backends.test_all_backends import *  # noqa: F401, F403  (the tests, collected here)


@pytest.fixture
def backend():
    return "cuda"
