"""Pictures: learning curves and the accuracy-versus-loss nudge.  matplotlib is the ``plot`` extra."""

from __future__ import annotations

from pathlib import Path

from numpy_mnist.errors import NumpyMnistError
from numpy_mnist.files import atomic_write

__all__ = ["pyplot", "save_figure", "plot_learning_curve", "plot_nudge"]


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise NumpyMnistError("plots need matplotlib: pip install 'numpy-mnist[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` as a PNG atomically and close it."""
    plt = pyplot()
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_learning_curve(history, path: str | Path, title: str = "") -> Path:
    """Train and valid loss (left axis) and valid accuracy (right axis) against the epoch."""
    plt = pyplot()
    epochs = [r.epoch for r in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(epochs, [r.train_loss for r in history], label="train loss", color="tab:blue")
    ax.plot(epochs, [r.valid_loss for r in history], label="valid loss", color="tab:orange")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    acc = ax.twinx()
    acc.plot(epochs, [r.accuracy for r in history], label="valid accuracy", color="tab:green")
    acc.set_ylabel("accuracy")
    lines = ax.get_lines() + acc.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_nudge(rows, path: str | Path) -> Path:
    """Accuracy (flat) and mnist_loss (moving) against the nudge of one weight."""
    plt = pyplot()
    deltas = [r.delta for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.step(deltas, [r.accuracy for r in rows], where="mid", color="tab:green")
    left.set_title("accuracy: flat steps, gradient 0")
    right.plot(deltas, [r.loss for r in rows], color="tab:blue")
    right.set_title("mnist_loss: moves, gradient useful")
    for ax in (left, right):
        ax.set_xlabel("change of one weight")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(useOffset=False, axis="y")
    return save_figure(fig, path)
