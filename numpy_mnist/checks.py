"""Checks at the public edges: a clear :class:`~numpy_mnist.errors.InputError` instead of nonsense."""

from __future__ import annotations

from array_api_compat import array_namespace

from numpy_mnist.errors import InputError


def check_same_shape(logits, targets) -> None:
    """Refuse ``targets`` whose shape differs from ``logits``.

    The classic chapter-4 bug: (N, 1) predictions against (N,) targets broadcast to (N, N) and
    train on nonsense without any error.
    """
    if tuple(logits.shape) != tuple(targets.shape):
        flat_targets = len(logits.shape) == 2 and len(targets.shape) == 1 and logits.shape[0] == targets.shape[0]
        hint = " (reshape the targets to (N, 1), e.g. y[:, None])" if flat_targets else ""
        raise InputError(f"targets must have the shape of the logits {tuple(logits.shape)}, "
                         f"got {tuple(targets.shape)}{hint}")


def check_2d(x, *, name: str, width: int) -> None:
    """Refuse anything but a 2-D (N, width) array with N >= 1."""
    shape = tuple(x.shape)
    if len(shape) != 2 or shape[1] != width:
        raise InputError(f"{name} must have shape (N, {width}), got {shape}")
    if shape[0] == 0:
        raise InputError(f"{name} is empty: a batch needs at least one row")


def check_on_backend(array, backend, *, name: str) -> None:
    """Refuse an array of another backend, or of another floating dtype than the model's."""
    if not backend.owns(array):
        kind = type(array).__module__.split(".")[0] + "." + type(array).__name__
        raise InputError(f"{name} is a {kind}, but the model lives on the {backend.name} backend: "
                         f"move it there first with backend.asarray({name})")
    if array.dtype != backend.dtype:
        raise InputError(f"{name} must be {backend.dtype_name} like the model's parameters, got {array.dtype}: "
                         f"convert it with backend.asarray({name})")


def check_finite(array, *, name: str) -> None:
    """Refuse NaN or infinity (one reduction over the array)."""
    xp = array_namespace(array)
    if not bool(xp.all(xp.isfinite(array))):
        bad = int(xp.sum(xp.astype(~xp.isfinite(array), xp.int64)))
        raise InputError(f"{name} holds {bad} NaN or infinite values: clean the data before training")


def check_targets(targets, outputs: int, *, n: int | None = None, name: str = "y", values: bool = True) -> None:
    """Refuse targets that do not fit a model with ``outputs`` logits per row.

    One output (the book's 3-vs-7): float targets of shape (N, 1), each 0 or 1.
    ``outputs`` classes: integer labels of shape (N,), each in 0 .. outputs - 1.
    ``values=False`` checks shape and dtype only, never reading the values (no wait for a GPU).
    """
    xp = array_namespace(targets)
    rows, shape, want = "N" if n is None else n, tuple(targets.shape), (n, 1) if outputs == 1 else (n,)
    if len(shape) != len(want) or shape[1:] != want[1:] or n not in (None, shape[0]):
        wanted = (f"have shape ({rows}, 1) for a one-output model" if outputs == 1
                  else f"be integer labels of shape ({rows},) for a {outputs}-class model")
        hint = " (reshape it with y[:, None])" if outputs == 1 and len(shape) == 1 else ""
        raise InputError(f"{name} must {wanted}, got {shape}{hint}")
    (_binary_targets if outputs == 1 else _class_labels)(xp, targets, outputs, name, values)


def _binary_targets(xp, targets, outputs: int, name: str, values: bool) -> None:
    if not xp.isdtype(targets.dtype, "real floating"):
        raise InputError(f"{name} must be floating (1.0 for a 3, 0.0 for a 7), got {targets.dtype}")
    if values and not bool(xp.all((targets == 0) | (targets == 1))):
        raise InputError(f"{name} must hold only 0 and 1 for the binary losses, got other values "
                         f"(min {float(xp.min(targets))}, max {float(xp.max(targets))})")


def _class_labels(xp, targets, outputs: int, name: str, values: bool) -> None:
    if not xp.isdtype(targets.dtype, "integral"):
        raise InputError(f"{name} must be integer class labels, got {targets.dtype}")
    low, high = (int(xp.min(targets)), int(xp.max(targets))) if values else (0, 0)
    if low < 0 or high >= outputs:
        raise InputError(f"{name} must hold labels 0 to {outputs - 1}, got labels from {low} to {high}")
