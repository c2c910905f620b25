"""Why accuracy cannot be the loss: nudge one weight and watch both.

Accuracy only changes when a prediction crosses 0.5, so for a small change of a weight it stays
exactly where it was: its gradient is zero almost everywhere and SGD would never move.  The book's
``mnist_loss`` moves with every nudge, because it measures *how* confident each prediction is.
"""

from __future__ import annotations

from dataclasses import dataclass

from numpy_mnist.metrics import batch_accuracy

__all__ = ["Nudge", "nudge_one_weight"]


@dataclass(frozen=True)
class Nudge:
    delta: float
    accuracy: float
    loss: float


def nudge_one_weight(model, x, y, *, name: str = "weights", index: tuple = (0, 0),
                     deltas=(-1e-3, -1e-4, 0.0, 1e-4, 1e-3)) -> list[Nudge]:
    """Accuracy and loss on ``(x, y)`` with ``model.params[name][index]`` moved by each delta.

    The model is left exactly as it was.  ``index`` defaults to the first weight; pick a pixel
    that is not always blank (e.g. ``(14 * 28 + 14, 0)``, the centre) for a visible effect.
    """
    backend, param = model.backend, model.params[name]
    original = backend.to_host(param)
    rows = []
    try:
        for delta in deltas:
            nudged = original.copy()
            nudged[index] += delta
            param[...] = backend.asarray(nudged)
            logits = model.forward(x)
            rows.append(Nudge(float(delta), float(batch_accuracy(logits, y)), float(model.loss.forward(logits, y))))
    finally:
        param[...] = backend.asarray(original)
    return rows


def centre_pixel() -> tuple[int, int]:
    """Index of the weight of the image's centre pixel (row 14, column 14 of 28) in a (784, 1) weight matrix."""
    return (14 * 28 + 14, 0)
