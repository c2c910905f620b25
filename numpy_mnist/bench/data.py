"""The benchmark's data: the book's MNIST_SAMPLE training set, and larger sets made from it."""

from __future__ import annotations

import numpy as np

__all__ = ["BenchData", "training_data", "synthetic_like", "grow_rows"]

#: Rows and columns of MNIST_SAMPLE's training set (the 3s and 7s of MNIST's training set).
SAMPLE_ROWS, PIXELS = 12_396, 784


class BenchData:
    """Images ``x`` (N, 784) float32 in [0, 1], targets ``y`` (N, 1) float32, and where they came from."""

    def __init__(self, x: np.ndarray, y: np.ndarray, source: str, real: bool) -> None:
        self.x, self.y, self.source, self.real = x, y, source, real

    @property
    def rows(self) -> int:
        return int(self.x.shape[0])

    def describe(self) -> dict:
        return {"source": self.source, "real": self.real, "rows": self.rows, "columns": int(self.x.shape[1]),
                "dtype": str(self.x.dtype), "bytes": int(self.x.nbytes)}


def training_data() -> BenchData:
    """MNIST_SAMPLE's training images and targets, as ``numpy_mnist.data.load_mnist_sample`` gives them.

    Where that loader is not available (a checkout without the data package), random images of the
    same shape and dtype stand in, and :attr:`BenchData.source` says so.
    """
    try:
        from numpy_mnist.data import load_mnist_sample
    except ImportError:
        x, y = synthetic_like(SAMPLE_ROWS)
        return BenchData(x, y, "synthetic: random images of MNIST_SAMPLE's shape "
                               "(numpy_mnist.data.load_mnist_sample is not available)", real=False)
    train_x, train_y, _, _ = load_mnist_sample()
    return BenchData(np.ascontiguousarray(train_x, dtype=np.float32), np.ascontiguousarray(train_y, dtype=np.float32),
                     "MNIST_SAMPLE train (numpy_mnist.data.load_mnist_sample)", real=True)


def synthetic_like(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images (N, 784) float32 with MNIST's pixel grid of k/255, and 0/1 targets (N, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(rows, PIXELS), dtype=np.uint8).astype(np.float32) / np.float32(255)
    y = (rng.random((rows, 1)) < 0.5).astype(np.float32)
    return x, y


def grow_rows(data: BenchData, rows: int, seed: int = 0) -> BenchData:
    """A dataset of ``rows`` rows made from ``data``: its first rows, or it repeated in shuffled order.

    Beyond the real 12,396 rows the set is synthetic: every row is a real image (so the pixel
    statistics, and anything speed-relevant about them, are MNIST's), drawn in a seeded random order.
    """
    if rows <= data.rows:
        return BenchData(data.x[:rows], data.y[:rows], data.source if rows == data.rows else
                         f"first {rows:,} rows of {data.source}", real=data.real)
    index = np.random.default_rng(seed).integers(0, data.rows, size=rows)
    x = np.take(data.x, index, axis=0)
    y = np.take(data.y, index, axis=0)
    return BenchData(x, y, f"synthetic: {rows:,} rows drawn with repetition from {data.source}", real=False)
