"""``array_api_strict``: the standard and nothing more, so NumPy-only habits fail loudly in tests."""

from __future__ import annotations

from numpy_mnist.backends.base import Backend, BackendUnavailableError


class StrictBackend(Backend):
    name = "array_api_strict"

    def __init__(self, dtype: str = "float32") -> None:
        try:
            import array_api_strict
        except ImportError as exc:
            raise BackendUnavailableError(
                "the array_api_strict backend needs the array-api-strict package: "
                "pip install 'numpy-mnist[test]'"
            ) from exc
        super().__init__(array_api_strict, dtype)
