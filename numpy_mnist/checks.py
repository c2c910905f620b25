"""Checks at the public edges: a clear :class:`~numpy_mnist.errors.InputError` instead of nonsense."""

from __future__ import annotations

from numpy_mnist.errors import InputError


def check_same_shape(logits, targets, *, what: str = "targets") -> None:
    """Refuse ``targets`` whose shape differs from ``logits``.

    The classic chapter-4 bug: (N, 1) predictions against (N,) targets broadcast to (N, N) and
    train on nonsense without any error.
    """
    if tuple(logits.shape) != tuple(targets.shape):
        hint = ""
        if len(logits.shape) == 2 and len(targets.shape) == 1 and logits.shape[0] == targets.shape[0]:
            hint = " (reshape the targets to (N, 1), e.g. y[:, None])"
        raise InputError(
            f"{what} must have the shape of the logits {tuple(logits.shape)}, "
            f"got {tuple(targets.shape)}{hint}"
        )


def check_2d(x, *, name: str, width: int | None = None) -> None:
    """Refuse anything but a 2-D (N, width) array with N >= 1."""
    shape = tuple(x.shape)
    if len(shape) != 2 or (width is not None and shape[1] != width):
        want = f"(N, {width})" if width is not None else "(N, D)"
        raise InputError(f"{name} must have shape {want}, got {shape}")
    if shape[0] == 0:
        raise InputError(f"{name} is empty: a batch needs at least one row")
