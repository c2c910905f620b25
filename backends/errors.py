"""The backend package's own exceptions.

They live here, not in :mod:`numpy_mnist`, so that ``backends`` depends on nothing of the model code;
:mod:`numpy_mnist.errors` re-exports them, and the command line reports them as it reports its own:
one line, exit status 2.
"""

from __future__ import annotations

__all__ = ["BackendError", "BackendUnavailableError", "ForeignArrayError"]


class BackendError(Exception):
    """Base class of the backend errors a user can cause and fix."""


class BackendUnavailableError(BackendError):
    """The asked-for array backend cannot run here (CuPy missing, no GPU, ...)."""


class ForeignArrayError(BackendError, ValueError):
    """An array of one backend was handed to another without going through the host."""
