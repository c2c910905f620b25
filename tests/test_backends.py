"""The backend interface: choosing, moving data, dtypes, and the one clear message without a GPU."""

import subprocess
import sys

import array_api_compat
import numpy as np
import pytest

from numpy_mnist.backends import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailableError,
    ForeignArrayError,
    available_backends,
    get_backend,
    to_numpy,
)
from numpy_mnist.errors import USER_ERRORS


def test_numpy_backend_basics():
    b = get_backend("numpy")
    assert b.name == "numpy" and b.dtype_name == "float32" and b.device == "CPU" and not b.is_gpu
    assert b.xp is array_api_compat.numpy and b.dtype == np.float32
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


def test_backend_errors_are_user_errors_the_cli_reports():
    assert issubclass(BackendUnavailableError, USER_ERRORS) and issubclass(ForeignArrayError, USER_ERRORS)
    assert issubclass(ForeignArrayError, ValueError)


def test_the_backend_package_imports_nothing_of_numpy_mnist():
    """Layering: the rest of numpy_mnist depends on its backends, never the other way round (the
    package's own ``__init__``, which imports nothing, is all they share)."""
    code = ("import sys\nimport numpy_mnist.backends as backends\n"
            "for name in backends.BACKEND_NAMES + ('torch',):\n"
            "    try: backends.get_backend(name)\n"
            "    except backends.BackendUnavailableError: pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy_mnist'\n"
            "             and m != 'numpy_mnist' and not m.startswith('numpy_mnist.backends')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_cupy_missing_gives_one_clear_message_naming_the_gpu_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError, GPU or not
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert "CuPy" in message and "not installed" in message and "numpy-mnist[gpu]" in message
    assert "\n" not in message


def test_cupy_without_a_usable_gpu_says_so(without_gpu):
    """No CuPy, or a CuPy whose CUDA runtime finds no device: one line naming the fix, not a CUDA traceback."""
    want = ("not installed.*numpy-mnist\\[gpu\\]" if without_gpu == "cupy not installed"
            else "no CUDA GPU is usable.*cudaErrorNoDevice.*--backend numpy")
    with pytest.raises(BackendUnavailableError, match=want) as info:
        get_backend("cupy")
    assert "\n" not in str(info.value)


def test_auto_falls_back_to_numpy_without_a_gpu(without_gpu):
    assert get_backend("auto").name == "numpy"


@pytest.mark.gpu
def test_cupy_backend_on_a_gpu(cupy_backend):
    """On a real GPU: array-api-compat's CuPy namespace, owned arrays, and the host through to_host."""
    import array_api_compat

    b = cupy_backend
    assert b.xp is array_api_compat.cupy and b.is_gpu and b.device != "CPU"
    x = b.asarray(np.arange(6.0).reshape(2, 3))
    assert b.owns(x) and array_api_compat.is_cupy_array(x) and x.dtype == b.dtype
    assert np.array_equal(b.to_host(b.xp.sum(x, axis=0)), np.array([3.0, 5.0, 7.0], np.float32))


def test_available_backends_lists_numpy_first():
    names = [b.name for b in available_backends()]
    assert names[0] == "numpy" and set(names) <= set(BACKEND_NAMES)


def test_to_numpy_copies_an_array_of_any_backend(backend):
    host = np.arange(6.0).reshape(2, 3)
    x = backend.asarray(host)
    for out in (to_numpy(x), backend.to_host(x), to_numpy(x, np.float32)):
        assert type(out) is np.ndarray and np.array_equal(out, host)
    assert to_numpy(x, np.float32).dtype == np.float32
    out = backend.to_host(x)
    out[0, 0] = 99.0  # a copy: the backend's array is untouched
    assert to_numpy(x)[0, 0] == 0.0
    assert to_numpy([1, 2]).tolist() == [1, 2] and to_numpy(np.float32(0.5)).dtype == np.float32


def test_the_torch_stand_in_fails_where_cupy_fails():
    """Why the suite runs on PyTorch tensors: like CuPy arrays, they have no __array_namespace__, and
    an implicit numpy.array(..., dtype=...) of one is an error under this suite's warnings-as-errors."""
    b = get_backend("torch", "float64")
    x = b.asarray(np.ones(3))
    assert not hasattr(x, "__array_namespace__") and array_api_compat.array_namespace(x) is b.xp
    with pytest.raises(DeprecationWarning, match="copy"):
        np.array(x, dtype=np.float64)
    host = np.zeros(3)
    y = b.asarray(host)
    y[0] = 1.0  # host -> device is a copy, as on CuPy
    assert host[0] == 0.0
    assert "torch" not in BACKEND_NAMES  # a test stand-in, not a choice on the command line
