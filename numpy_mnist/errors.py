"""The project's own exceptions.

Every error a user can cause is a :class:`NumpyMnistError`; the command line prints its message as
one line on stderr and exits with status 2.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "NumpyMnistError",
    "BackendUnavailableError",
    "InputError",
    "DataError",
    "ChecksumError",
    "DivergenceError",
    "CheckpointError",
]


class NumpyMnistError(Exception):
    """Base class of the errors a user can cause and fix."""


class BackendUnavailableError(NumpyMnistError):
    """The asked-for array backend cannot run here (CuPy missing, no GPU, ...)."""


class InputError(NumpyMnistError, ValueError):
    """An argument has the wrong shape, dtype, values or backend."""


class DataError(NumpyMnistError):
    """A data file is missing, truncated, corrupt or not what it claims to be."""


class ChecksumError(DataError):
    """A file's checksum differs from the published one."""


class DivergenceError(NumpyMnistError):
    """Training produced a NaN or infinite loss."""


class CheckpointError(NumpyMnistError):
    """A checkpoint cannot be written, read, or does not fit the model it is loaded into."""
