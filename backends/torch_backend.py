"""PyTorch CPU tensors as plain arrays: the test-suite's stand-in for CuPy on a machine without a GPU.

Not a training backend (the command line does not offer it, and ``"auto"`` never picks it): no
autograd, just ``torch.Tensor`` through ``array_api_compat.torch``.  It is here because a tensor
fails exactly where a CuPy array fails and NumPy does not:

- it has no ``__array_namespace__``: only ``array_api_compat.array_namespace`` finds its namespace;
- ``numpy.array(tensor, dtype=...)`` raises NumPy 2's copy-keyword ``DeprecationWarning`` (an error
  under the suite's ``filterwarnings = error``), as ``numpy.array(cupy_array)`` does.

So every backend-parametrized test that passes on it proves the code finds namespaces and reaches
the host the way CuPy needs, without a GPU.
"""

from __future__ import annotations

from numpy_mnist.backends.base import Backend, BackendUnavailableError


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, dtype: str = "float32") -> None:
        try:
            import array_api_compat.torch as compat_torch
            import torch  # noqa: F401  (array_api_compat.torch imports it lazily on first use)
        except ImportError as exc:
            raise BackendUnavailableError(
                "the torch backend (the test-suite's CPU stand-in for CuPy) needs PyTorch: "
                "pip install 'numpy-mnist[test]'"
            ) from exc
        super().__init__(compat_torch, dtype)
