"""The backend interface: choosing, moving data, dtypes, and the one clear message without a GPU."""

import importlib.util
import sys

import numpy as np
import pytest

from backends import BACKEND_NAMES, Backend, BackendUnavailableError, available_backends, get_backend
from numpy_mnist.errors import NumpyMnistError

HAVE_CUPY = importlib.util.find_spec("cupy") is not None


def test_numpy_backend_basics():
    b = get_backend("numpy")
    assert b.name == "numpy" and b.dtype_name == "float32" and b.device == "CPU" and not b.is_gpu
    assert b.xp is np and b.dtype == np.float32
    b.synchronize()  # a no-op that must exist


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_asarray_casts_floats_and_keeps_integers(backend, dtype):
    b = get_backend(backend, dtype)
    x = b.asarray(np.linspace(0, 1, 6).reshape(2, 3))
    assert x.dtype == b.dtype
    labels = b.asarray(np.arange(4, dtype=np.int64))
    assert labels.dtype == b.xp.int64
    assert b.owns(x) and b.owns(labels)


def test_asarray_of_own_array_is_not_copied_when_dtype_matches(backend):
    x = backend.asarray(np.ones((3, 2)))
    assert backend.asarray(x) is x
    y = get_backend(backend, "float32").asarray(x)
    assert y.dtype == get_backend(backend, "float32").dtype


def test_to_host_is_an_independent_copy(backend):
    x = backend.asarray(np.arange(6.0))
    host = backend.to_host(x)
    assert isinstance(host, np.ndarray) and host.dtype == np.float64
    host[0] = 99
    assert backend.to_host(x)[0] == 0


def test_same_host_data_gives_same_values_on_every_backend():
    host = np.random.default_rng(0).standard_normal((5, 4))
    results = [b.to_host(b.asarray(host)) for b in available_backends("float32")]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_unknown_backend_and_dtype_are_refused():
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        get_backend("jax")
    with pytest.raises(ValueError, match="float16"):
        get_backend("numpy", "float16")


def test_get_backend_passes_a_backend_through_and_changes_dtype():
    b = get_backend("numpy", "float32")
    assert get_backend(b, "float32") is b
    assert get_backend(b, "float64").dtype == np.float64
    assert isinstance(b, Backend) and b == get_backend("numpy") and hash(b) == hash(get_backend("numpy"))


def test_backend_unavailable_is_the_projects_error():
    assert issubclass(BackendUnavailableError, NumpyMnistError)


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy is installed here")
def test_cupy_missing_gives_one_clear_message_naming_the_gpu_extra():
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert "CuPy" in message and "not installed" in message and "numpy-mnist[gpu]" in message
    assert "\n" not in message


def test_cupy_without_a_usable_gpu_says_so(monkeypatch):
    """A CuPy whose CUDA runtime finds no device: the message says no GPU, not a CUDA traceback."""

    class FakeRuntime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    class FakeCuda:
        runtime = FakeRuntime

    class FakeCupy:
        cuda = FakeCuda

    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU is usable.*cudaErrorNoDevice.*--backend numpy"):
        get_backend("cupy")


def test_auto_falls_back_to_numpy_without_a_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert get_backend("auto").name == "numpy"


def test_available_backends_lists_numpy_first():
    names = [b.name for b in available_backends()]
    assert names[0] == "numpy" and set(names) <= set(BACKEND_NAMES)
