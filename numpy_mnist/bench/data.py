"""The benchmark's data: the book's MNIST_SAMPLE training set, and larger sets made from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numpy_mnist.data import load_mnist_sample

__all__ = ["BenchData", "training_data", "grow_rows"]


@dataclass
class BenchData:
    """Images ``x`` (N, 784) float32 in [0, 1], targets ``y`` (N, 1) float32, and where they came from."""

    x: np.ndarray
    y: np.ndarray
    source: str
    real: bool

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def describe(self) -> dict:
        return {"source": self.source, "real": self.real, "rows": self.rows, "columns": int(self.x.shape[1]),
                "dtype": str(self.x.dtype), "bytes": int(self.x.nbytes)}


def training_data() -> BenchData:
    """MNIST_SAMPLE's training images and targets, as ``numpy_mnist.data.load_mnist_sample`` gives them."""

    train_x, train_y, _, _ = load_mnist_sample()
    return BenchData(np.ascontiguousarray(train_x, dtype=np.float32), np.ascontiguousarray(train_y, dtype=np.float32),
                     "MNIST_SAMPLE train (numpy_mnist.data.load_mnist_sample)", real=True)


def grow_rows(data: BenchData, rows: int, seed: int = 0) -> BenchData:
    """A dataset of ``rows`` rows made from ``data``: its first rows, or it repeated in shuffled order.

    Beyond the real 12,396 rows the set is synthetic: every row is a real image (so the pixel
    statistics, and anything speed-relevant about them, are MNIST's), drawn in a seeded random order.
    """
    if rows <= data.rows:
        source = data.source if rows == data.rows else f"first {rows:,} rows of {data.source}"
        return BenchData(data.x[:rows], data.y[:rows], source, real=data.real)
    index = np.random.default_rng(seed).integers(0, data.rows, size=rows)
    return BenchData(np.take(data.x, index, axis=0), np.take(data.y, index, axis=0),
                     f"synthetic: {rows:,} rows drawn with repetition from {data.source}", real=False)
