"""The project's own exceptions.

Every error a user can cause is a :class:`NumpyMnistError`, or one of the backend package's own
(:class:`~numpy_mnist.backends.errors.BackendError`, re-exported here); the command line prints its message as
one line on stderr and exits with status 2.  Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from numpy_mnist.backends.errors import BackendError, BackendUnavailableError, ForeignArrayError

__all__ = [
    "NumpyMnistError",
    "USER_ERRORS",
    "BackendError",
    "BackendUnavailableError",
    "ForeignArrayError",
    "InputError",
    "DataError",
    "ChecksumError",
    "DivergenceError",
    "CheckpointError",
    "OutputError",
]


class NumpyMnistError(Exception):
    """Base class of the errors a user can cause and fix."""


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


class OutputError(NumpyMnistError):
    """A file could not be written where it was asked for (what it held is kept elsewhere, and said)."""


#: Everything the command line reports as one line and exit status 2.
USER_ERRORS = (NumpyMnistError, BackendError)
