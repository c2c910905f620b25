"""``DataLoader``: minibatches ``(xb, yb)`` on a chosen backend, as the book's ``DataLoader``."""

from __future__ import annotations

import math
import numbers

import numpy as np

from numpy_mnist.backends import Backend, get_backend
from numpy_mnist.checks import check_finite
from numpy_mnist.errors import InputError

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``(x, y)`` in minibatches of ``batch_size`` rows, on ``backend``.

    The whole dataset is moved to the backend once, at construction; a batch is then a slice (no
    copy) or, when shuffling, one gather.  Shuffling is off by default, as in the book.  With
    ``shuffle=True`` the order of epoch ``e`` is ``default_rng([seed, e]).permutation(N)``: each
    epoch differs, and the order of any epoch can be reproduced (:meth:`set_epoch`, for resuming).

    Parameters
    ----------
    x, y : array-like
        Host arrays (or arrays already on ``backend``) with the same number of rows.
    batch_size : int
        Rows per batch (default 256, the book's).
    shuffle : bool
        Draw a new order every epoch.
    seed : int
        Seed of the shuffling.
    drop_last : bool
        Leave out a last batch smaller than ``batch_size``.
    backend : str or Backend
        Where the batches live.
    """

    def __init__(self, x, y, batch_size: int = 256, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, backend: str | Backend = "numpy") -> None:
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        n_x, n_y = _rows(x, "x"), _rows(y, "y")
        if n_x != n_y:
            raise InputError(f"x and y must have the same number of rows, got {n_x} and {n_y}")
        if n_x == 0:
            raise InputError("the dataset is empty: x and y have no rows")
        if drop_last and n_x < batch_size:
            raise InputError(f"drop_last with batch_size {batch_size} leaves no batch of the {n_x} rows")
        self.x, self.y = self.backend.asarray(x), self.backend.asarray(y)
        check_finite(self.x, name="x")
        check_finite(self.y, name="y")
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last, self.epoch = bool(drop_last), 0

    @property
    def n_rows(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        return (math.floor if self.drop_last else math.ceil)(self.n_rows / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce the order of ``epoch`` (counted from 0)."""
        self.epoch = int(epoch)

    def order(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch`` on the host (``arange`` when not shuffling)."""
        if not self.shuffle:
            return np.arange(self.n_rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        xp, n, bs = self.backend.xp, self.n_rows, self.batch_size
        order = self.backend.asarray(self.order(epoch), dtype="int64") if self.shuffle else None
        for start in range(0, len(self) * bs, bs):
            rows = slice(start, min(start + bs, n))
            if order is None:  # a view
                yield self.x[rows, ...], self.y[rows, ...]
            else:  # one gather
                yield xp.take(self.x, order[rows], axis=0), xp.take(self.y, order[rows], axis=0)

    def __repr__(self) -> str:
        return (f"DataLoader({self.n_rows} rows, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, backend={self.backend.name})")


def _rows(a, name: str) -> int:
    shape = np.shape(a)  # ``a.shape`` where ``a`` has one (an array of any backend), else NumPy's reading
    if len(shape) == 0:
        raise InputError(f"{name} must have a row axis, got a scalar")
    return int(shape[0])
