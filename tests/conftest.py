"""Shared fixtures: the backends every test runs on, hypothesis profiles, the shared MNIST files.

Hypothesis profiles
-------------------
``fast`` (default) keeps the whole suite within a few minutes for CI; ``thorough`` runs many more
examples.  Choose one with ``pytest --hypothesis-profile=thorough`` or with the environment variable
``NUMPY_MNIST_HYPOTHESIS_PROFILE=thorough``.

The shared MNIST files
----------------------
Tests of the real MNIST files skip where they are missing, unless ``NUMPY_MNIST_REQUIRE_DATA=1``
(CI sets it): then a missing file is a failure, so a green run cannot hide forty skipped tests.

Skips
-----
``-r`` lists no skips (``pyproject.toml``); instead the end of a run counts them by reason, one
line per reason (``pytest_terminal_summary`` below), so the CuPy reason shared by a hundred tests
is said once.  ``-rs`` still lists every one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from numpy_mnist.backends import BackendUnavailableError, get_backend

settings.register_profile("fast", max_examples=25, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("NUMPY_MNIST_HYPOTHESIS_PROFILE", "fast"))

#: Where the real MNIST files live: beside the checkout, or where NUMPY_MNIST_SHARED_DATA says (on a
#: machine the checkout was copied to without its neighbours).  Tests may read them; the package may not.
SHARED_DATA = Path(os.environ.get("NUMPY_MNIST_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")

#: The backends every backend-parametrized test runs on.  ``torch`` (PyTorch CPU tensors through
#: array_api_compat.torch) is the CPU stand-in for CuPy: like a CuPy array, a tensor has no
#: ``__array_namespace__`` and refuses ``numpy.array(tensor, dtype=...)`` under this suite's
#: warnings-as-errors, so code that would break on a GPU breaks here first.
BACKEND_NAMES = ("numpy", "array_api_strict", "torch", "cupy")


#: A GPU is asked for (``NUMPY_MNIST_REQUIRE_GPU=1``, which ``scripts/gpu_checks.sh`` sets): a test that
#: needs CuPy then fails with the reason CuPy cannot run, instead of skipping, and a run in which no
#: test passed on the GPU fails as a whole.  So a GPU check can never pass by running nothing.
REQUIRE_GPU = os.environ.get("NUMPY_MNIST_REQUIRE_GPU") == "1"
#: The property a test carries (``user_properties``) when it was given the real CuPy backend.
RAN_ON_GPU = ("ran_on_gpu", True)


def _backend_or_skip(name: str, dtype: str, request=None):
    try:
        backend = get_backend(name, dtype)
    except BackendUnavailableError as exc:
        why = str(exc)
    else:
        if name == "cupy" and request is not None:
            request.node.user_properties.append(RAN_ON_GPU)
        return backend
    if name == "cupy" and REQUIRE_GPU:
        pytest.fail(f"NUMPY_MNIST_REQUIRE_GPU=1 but the cupy backend is unavailable: {why}", pytrace=False)
    pytest.skip(f"{name} backend unavailable here: {why}")


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """Each backend in float64 (CuPy skipped where no GPU is usable, torch where PyTorch is missing)."""
    return _backend_or_skip(request.param, "float64", request)


@pytest.fixture(params=BACKEND_NAMES)
def backend32(request):
    """Each backend in float32 (CuPy skipped where no GPU is usable, torch where PyTorch is missing)."""
    return _backend_or_skip(request.param, "float32", request)


class _CupyWithoutADevice:
    """A stand-in ``cupy`` module whose CUDA runtime finds no device (as on a machine without a GPU)."""

    class cuda:
        class runtime:
            @staticmethod
            def getDeviceCount():
                raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")


@pytest.fixture(params=["cupy not installed", "no CUDA device"])
def without_gpu(request, monkeypatch):
    """This machine as if it had no usable GPU, whatever it really has.

    Either ``import cupy`` fails, or CuPy imports but its CUDA runtime finds no device.  Tests of
    the no-GPU messages use it, so that they run, and mean the same, on a machine with a GPU.
    """
    monkeypatch.setitem(sys.modules, "cupy", None if request.param == "cupy not installed" else _CupyWithoutADevice)
    return request.param


@pytest.fixture
def cupy_backend(request):
    """The CuPy backend in float32, or a skip where no GPU is usable (a failure if one is required)."""
    return _backend_or_skip("cupy", "float32", request)


_passed_on_gpu = 0


def pytest_runtest_logreport(report):
    global _passed_on_gpu
    if report.when == "call" and report.passed and RAN_ON_GPU in report.user_properties:
        _passed_on_gpu += 1


def pytest_sessionfinish(session, exitstatus):
    """With a GPU required, a run in which no test passed on it fails (exit status 1), whatever else passed."""
    if REQUIRE_GPU and _passed_on_gpu == 0 and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


#: Set to 1 to make a missing shared MNIST file a failure instead of a skip (CI does).
REQUIRE_DATA_ENV = "NUMPY_MNIST_REQUIRE_DATA"


def data_required() -> bool:
    return os.environ.get(REQUIRE_DATA_ENV, "").strip() not in ("", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout: the canonical MNIST files."""
    if not (SHARED_DATA / "mnist_sample.tgz").exists():
        problem = f"the shared MNIST files are not at {SHARED_DATA}"
        if data_required():
            pytest.fail(f"{problem}, and {REQUIRE_DATA_ENV}=1 requires them (set NUMPY_MNIST_SHARED_DATA "
                        "to their folder)", pytrace=False)
        pytest.skip(problem)
    return SHARED_DATA


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """How many tests passed on the GPU, where one is required; then the skipped tests counted by
    reason, one line per reason, most common first (unless ``-rs`` already listed each one)."""
    if REQUIRE_GPU:
        terminalreporter.write_line(f"NUMPY_MNIST_REQUIRE_GPU=1: {_passed_on_gpu} tests passed on the GPU"
                                    + ("" if _passed_on_gpu else ": none ran there, so this run fails"),
                                    red=not _passed_on_gpu, bold=True)
    if "s" in (config.option.reportchars or "").replace("a", "s").replace("A", "s"):
        return
    counts: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        else:
            reason = str(report.longrepr)
        counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section(f"{sum(counts.values())} skipped, by reason", sep="-")
        for reason, n in sorted(counts.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{n:5d}  {reason}")
