"""The book's first attempt, before any learning: pixel similarity to the mean 3 and the mean 7.

An image is called a 3 when it is closer to the mean 3 than to the mean 7.  Distances, per image::

    L1   (mean absolute difference)   d(a, b) = mean |a - b|
    RMSE (root mean squared error)    d(a, b) = sqrt(mean (a - b)^2)

With the L1 distance the book reports 0.9168 on the valid 3s and 0.9854 on the valid 7s.
"""

from __future__ import annotations

from dataclasses import dataclass

from array_api_compat import array_namespace

__all__ = ["PixelSimilarity", "mnist_distance", "pixel_similarity"]

DISTANCES = ("l1", "rmse")


def mnist_distance(a, b, kind: str = "l1"):
    """Distance of each row of ``a`` (N, 784) to the image ``b`` (784,): shape (N,)."""
    xp = array_namespace(a)
    diff = a - b
    if kind == "l1":
        return xp.mean(xp.abs(diff), axis=-1)
    if kind == "rmse":
        return xp.sqrt(xp.mean(diff * diff, axis=-1))
    raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {kind!r}")


@dataclass(frozen=True)
class PixelSimilarity:
    distance: str
    accuracy_3: float
    accuracy_7: float
    accuracy: float


def pixel_similarity(train_x, train_y, valid_x, valid_y, distance: str = "l1") -> PixelSimilarity:
    """Accuracy of "closer to the mean 3 than to the mean 7" on the validation set.

    ``train_y``/``valid_y`` are (N, 1) with 1 for a 3 and 0 for a 7, as :func:`load_mnist_sample`.
    """
    xp = array_namespace(train_x)
    is3_train, is3_valid = train_y[:, 0] == 1, valid_y[:, 0] == 1
    mean3, mean7 = _masked_mean(xp, train_x, is3_train), _masked_mean(xp, train_x, ~is3_train)
    said3 = mnist_distance(valid_x, mean3, distance) < mnist_distance(valid_x, mean7, distance)
    right = said3 == is3_valid
    total = float(xp.sum(xp.astype(right, xp.float64))) / right.shape[0]
    return PixelSimilarity(distance, _fraction(xp, right, is3_valid), _fraction(xp, right, ~is3_valid), total)


def _masked_mean(xp, x, mask):
    w = xp.astype(mask, x.dtype)[:, None]
    return xp.sum(x * w, axis=0) / xp.sum(w)


def _fraction(xp, right, mask) -> float:
    return float(xp.sum(xp.astype(right & mask, xp.float64)) / xp.sum(xp.astype(mask, xp.float64)))
