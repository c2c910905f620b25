"""Shared fixtures: the backends every test runs on, hypothesis profiles, the shared MNIST files.

Hypothesis profiles
-------------------
``fast`` (default) keeps the whole suite within a few minutes for CI; ``thorough`` runs many more
examples.  Choose one with ``pytest --hypothesis-profile=thorough`` or with the environment variable
``NUMPY_MNIST_HYPOTHESIS_PROFILE=thorough``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from backends import BackendUnavailableError, get_backend

settings.register_profile("fast", max_examples=25, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("NUMPY_MNIST_HYPOTHESIS_PROFILE", "fast"))

#: Where the real MNIST files live beside the checkout (tests may read them; the package may not).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

BACKEND_NAMES = ("numpy", "array_api_strict", "cupy")


def _backend_or_skip(name: str, dtype: str):
    try:
        return get_backend(name, dtype)
    except BackendUnavailableError as exc:
        pytest.skip(f"{name} backend unavailable here: {exc}")


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """Each backend in float64 (CuPy skipped where no GPU is usable)."""
    return _backend_or_skip(request.param, "float64")


@pytest.fixture(params=BACKEND_NAMES)
def backend32(request):
    """Each backend in float32 (CuPy skipped where no GPU is usable)."""
    return _backend_or_skip(request.param, "float32")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout: the canonical MNIST files."""
    if not (SHARED_DATA / "mnist_sample.tgz").exists():
        pytest.skip(f"the shared MNIST files are not at {SHARED_DATA}")
    return SHARED_DATA
