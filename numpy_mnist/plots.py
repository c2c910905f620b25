"""Pictures: learning curves, the accuracy-versus-loss nudge, and for the ten digits the linear model's
weights and a confusion matrix.  matplotlib is the ``plot`` extra.  Arrays of any backend are brought
to the host with :func:`numpy_mnist.backends.host.to_numpy`.

Each picture has a builder, ``*_figure(...) -> matplotlib Figure``; :func:`save_figure` saves one as
a PNG (atomically).  :func:`images_figure` draws any set of 28x28 pictures (digits, mean images,
weights, gradients); :func:`figure_png` turns a figure into PNG bytes, which is how the notebook
shows them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from numpy_mnist.backends.host import to_numpy
from numpy_mnist.errors import InputError, NumpyMnistError
from numpy_mnist.files import atomic_write

__all__ = ["class_weights_figure", "confusion_matrix_figure", "figure_png", "images_figure", "learning_curve_figure",
           "nudge_figure", "pyplot", "save_figure"]


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
    with atomic_write(path) as f:  # (a figure that fails to draw writes nothing)
        f.write(figure_png(fig))
    return Path(path)


def figure_png(fig, dpi: int = 120) -> bytes:
    """``fig`` as PNG bytes (cropped to its contents); the figure is closed."""

    plt = pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


#: The label of a signed picture's colour bar.
SIGNED_LABEL = "value (red > 0, white = 0, blue < 0)"


def images_figure(images, titles=None, *, ncols: int | None = None, symmetric: bool = False, shared: bool = True,
                  title: str = "", size: float = 1.6, label: str = SIGNED_LABEL, limit: float | None = None):
    """A row (or grid) of 28x28 pictures: digits, mean images, weight vectors, gradients.

    ``images`` is a sequence of arrays (of any backend) of 784 values each (any shape holding them, e.g. (784,),
    (784, 1) or (28, 28)).  Pixels are drawn dark on light (``gray_r``) by default.  With
    ``symmetric=True`` the colour scale is diverging, linear and centred on 0 (red positive, blue negative,
    ``RdBu_r``, from -m to m), for weights and gradients, whose sign is the point: one scale for all
    pictures (``shared=True``, so that they compare), or each its own (``shared=False``, to see the shape
    of a small one beside a large one).  ``m`` is the largest ``|value|`` (of all pictures, or of each),
    unless ``limit`` sets it (larger values are then drawn at full colour).  A colour bar, labelled
    ``label``, shows the scale of symmetric pictures (one for a shared scale, one per picture
    otherwise); others have none.
    """
    pictures = _pictures(images)
    ncols = ncols or len(pictures)
    nrows = -(-len(pictures) // ncols)
    own_bars = symmetric and not shared
    limit = limit or (max(float(abs(p).max()) for p in pictures) if shared else None)
    # inches: ``size`` per picture, and room for the colour bars (a third more per picture with its own)
    width = size * ncols * (1.35 if own_bars else 1) + (0.9 if symmetric and not own_bars else 0)
    fig, axes = pyplot().subplots(nrows, ncols, squeeze=False, figsize=(width, size * nrows + 0.3))
    for ax in axes.flat:
        ax.set_axis_off()
    drawn = [ax.imshow(p, **_scale(p, symmetric, limit)) for ax, p in zip(axes.flat, pictures)]
    for ax, text in zip(axes.flat, titles or ()):
        ax.set_title(text, fontsize=9)
    if symmetric:
        _colour_bars(fig, axes, drawn, own=own_bars, label=label)
    if title:
        fig.suptitle(title)
    return fig


def _scale(picture, symmetric: bool, limit: float | None) -> dict:
    """imshow's colour options: ``gray_r``, or a diverging scale from -m to m (``limit``, else the picture's)."""
    if not symmetric:
        return {"cmap": "gray_r"}
    m = (limit or float(abs(picture).max())) or 1.0
    return {"cmap": "RdBu_r", "vmin": -m, "vmax": m}


def _colour_bars(fig, axes, images, *, own: bool, label: str | None) -> None:
    """One colour bar beside the pictures (one shared scale), or one beside each (``own``), and the label."""
    if not own:
        fig.colorbar(images[-1], ax=axes.ravel().tolist(), shrink=0.8, label=label)
        return
    for ax, image in zip(axes.flat, images):
        fig.colorbar(image, ax=ax, shrink=0.8, fraction=0.08).ax.tick_params(labelsize=7)
    if label:
        fig.text(0.5, 0.01, label, ha="center", fontsize=8)


def _pictures(images) -> list:
    """Each image as a (28, 28) float64 host array, or an :class:`InputError`."""

    pictures = [to_numpy(im, np.float64) for im in images]
    if not pictures:
        raise InputError("images_figure needs at least one picture")
    if any(p.size != 28 * 28 for p in pictures):
        raise InputError(f"each picture must hold 28 x 28 = 784 values, got sizes {[p.size for p in pictures]}")
    return [p.reshape(28, 28) for p in pictures]


def learning_curve_figure(history, title: str = ""):
    """Train and valid loss (left axis) and valid accuracy (right axis) against the epoch."""
    epochs = [r.epoch for r in history]
    fig, ax = pyplot().subplots(figsize=(7, 4))
    ax.plot(epochs, [r.train_loss for r in history], label="train loss", color="tab:blue")
    ax.plot(epochs, [r.valid_loss for r in history], label="valid loss", color="tab:orange")
    ax.set(xlabel="epoch", ylabel="loss", title=title or "learning curve")
    acc = ax.twinx()
    acc.plot(epochs, [r.accuracy for r in history], label="valid accuracy", color="tab:green")
    acc.set_ylabel("accuracy")
    ax.legend(handles=ax.get_lines() + acc.get_lines(), loc="center right")
    ax.grid(alpha=0.3)
    return fig


def nudge_figure(rows):
    """Accuracy (flat) and mnist_loss (moving) against the nudge of one weight."""
    deltas = [r.delta for r in rows]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(9, 3.5))
    left.step(deltas, [r.accuracy for r in rows], where="mid", color="tab:green")
    right.plot(deltas, [r.loss for r in rows], color="tab:blue")
    for ax, title in zip((left, right), ("accuracy: flat steps, gradient 0", "mnist_loss: moves, gradient useful")):
        ax.set(title=title, xlabel="change of one weight")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(useOffset=False, axis="y")
    return fig


def class_weights_figure(weights, title: str = ""):
    """Each class's weight vector as a 28x28 picture, in a grid of 2 rows (2x5 for ten digits).

    ``weights`` is the linear model's (784, K) array, of any backend; picture ``k`` is column ``k``.
    Red pixels add to the class's logit when lit, blue ones subtract; one colour scale, symmetric about 0, is
    shared by all pictures so that they can be compared.  The scale ends at the 99.5th percentile of
    ``|w|`` (the few larger weights, mostly on rarely lit edge pixels, are drawn at full colour) so
    that a handful of outliers do not wash out every picture.
    """

    weights = to_numpy(weights, np.float64)
    if weights.ndim != 2 or weights.shape[0] != 28 * 28:
        raise InputError(f"weights must have shape (784, K), one column per class, got {weights.shape}")
    k = weights.shape[1]
    return images_figure(list(weights.T), [str(i) for i in range(k)], ncols=(k + 1) // 2, symmetric=True,
                         limit=float(np.percentile(np.abs(weights), 99.5)), size=1.7, label="weight",
                         title=title or "weights of the linear model, one 28x28 picture per class")


def confusion_matrix_figure(cm, title: str = ""):
    """A confusion matrix (rows: true class, columns: predicted) with its counts written in.

    The colour of a cell is its share of the row (of that true class) on a square-root scale, so the
    few mistakes stay visible next to the diagonal's thousands.
    """

    plt = pyplot()
    from matplotlib.colors import PowerNorm
    cm = to_numpy(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise InputError(f"cm must be a square (K, K) matrix of counts, got shape {cm.shape}")
    k = cm.shape[0]
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.55 * k + 2, 0.5 * k + 1.5))
    image = ax.imshow(share, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))
    for i, j in np.ndindex(k, k):
        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                color="white" if share[i, j] > 0.3 else "black")
    fig.colorbar(image, ax=ax, label="share of the true class")
    correct, total = int(np.trace(cm)), int(cm.sum())
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true",
           title=title or f"confusion matrix: {correct} of {total} right ({correct / max(total, 1):.2%})")
    return fig
