"""The book's MNIST_SAMPLE (3s and 7s), bundled with the package so it works offline.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.
MNIST_SAMPLE is fastai's selection of its 3s and 7s: every 3 and 7 of the MNIST training set
(``train``) and of its test set (``valid``).

The bundled ``mnist_sample.npz`` holds the images as uint8, each class sorted by its index in the
IDX file of its split (the ``N`` of the book's ``N.png``).  It is built by
``scripts/build_sample.py`` from ``mnist_sample.tgz``; its SHA-256 is checked on every load.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from numpy_mnist.errors import ChecksumError, DataError

__all__ = ["load_mnist_sample", "load_sample_indices", "book_arrays", "SAMPLE_FILE", "SAMPLE_SHA256"]

#: The bundled file, and its SHA-256 as printed by ``scripts/build_sample.py``.
SAMPLE_FILE = Path(__file__).with_name("mnist_sample.npz")
SAMPLE_SHA256 = "1e39f2da0c8abcb67be4be424e0ac34e5723626b2aa00bd38e29898ae0082e54"


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The book's 3s-and-7s data, stacked exactly as the book stacks it.

    Returns
    -------
    train_x, train_y, valid_x, valid_y : numpy.ndarray
        ``x`` is float32 of shape ``(N, 784)``, pixels scaled to ``[0, 1]`` (``uint8 / 255``);
        ``y`` is float32 of shape ``(N, 1)``, ``1.0`` for a 3 and ``0.0`` for a 7.  The 3s come
        first, then the 7s, each in the order of its image index.  ``train`` has 12,396 rows
        (6,131 threes and 6,265 sevens), ``valid`` 2,038 (1,010 and 1,028).

    Raises
    ------
    ChecksumError
        The bundled file is damaged or was replaced (reinstall the package).
    DataError
        The bundled file is missing.
    """
    return book_arrays(_read_bundle())


def book_arrays(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x, train_y, valid_x, valid_y)`` of the bundle's arrays (``{split}_images`` uint8,
    ``{split}_digits`` 3 or 7): ``x = images / 255`` as float32 ``(N, 784)``, ``y`` float32 ``(N, 1)``,
    1.0 for a 3 and 0.0 for a 7."""
    out = []
    for split in ("train", "valid"):
        images = arrays[f"{split}_images"]
        out += [images.reshape(len(images), -1).astype(np.float32) / np.float32(255),
                (arrays[f"{split}_digits"] == 3).astype(np.float32).reshape(-1, 1)]
    return tuple(out)


def load_sample_indices() -> tuple[np.ndarray, np.ndarray]:
    """The IDX index of every row of :func:`load_mnist_sample`'s ``train`` and ``valid``."""
    arrays = _read_bundle()
    return arrays["train_indices"].astype(np.int64), arrays["valid_indices"].astype(np.int64)


def _read_bundle() -> dict[str, np.ndarray]:
    try:
        data = SAMPLE_FILE.read_bytes()
    except OSError as exc:
        raise DataError(f"{SAMPLE_FILE}: the bundled MNIST sample cannot be read ({exc.strerror or exc}); "
                        "reinstall the package: pip install --force-reinstall numpy-mnist") from None
    if (digest := hashlib.sha256(data).hexdigest()) != SAMPLE_SHA256:
        raise ChecksumError(f"{SAMPLE_FILE}: SHA-256 is {digest}, expected {SAMPLE_SHA256}; the bundled "
                            "MNIST sample is damaged: reinstall the package "
                            "(pip install --force-reinstall numpy-mnist)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}
