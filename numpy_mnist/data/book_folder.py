"""Reading the book's own download of MNIST_SAMPLE: ``mnist_sample/{train,valid}/{3,7}/N.png``.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

For a reader who already has the folder that fastai's ``untar_data(URLs.MNIST_SAMPLE)`` unpacks.
Decoding PNGs needs Pillow, the optional ``images`` extra.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from numpy_mnist.data.sample import book_arrays
from numpy_mnist.errors import DataError

__all__ = ["load_book_folder", "read_book_folder"]

_NAME = re.compile(r"^(\d+)\.png$", re.IGNORECASE)


def load_book_folder(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the book's PNG folders into the same arrays as :func:`load_mnist_sample`.

    Parameters
    ----------
    path : path
        The ``mnist_sample`` folder (holding ``train/`` and ``valid/``) or the folder containing it.

    Returns
    -------
    train_x, train_y, valid_x, valid_y : numpy.ndarray
        ``x`` float32 ``(N, 784)`` in ``[0, 1]``; ``y`` float32 ``(N, 1)``, 1.0 for a 3 and 0.0 for
        a 7; 3s first, each class sorted by the integer ``N`` of ``N.png``.  Files that are not
        ``.png`` (``labels.csv``, ``.DS_Store``) are ignored.

    Raises
    ------
    DataError
        Pillow is missing, the layout is not there, a folder holds no image, a PNG has a name that
        is not a number, or cannot be decoded, or is not a 28x28 8-bit greyscale image.
    """
    return book_arrays(read_book_folder(path))


def read_book_folder(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The book's PNG folders as the bundled sample's arrays, for each split: ``{split}_images``
    uint8 ``(N, 28, 28)``, ``{split}_digits`` uint8 (3 or 7) and ``{split}_indices`` int32 (the
    ``N`` of ``N.png``); 3s first, each class sorted by ``N``.  Raises as :func:`load_book_folder`."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading the book's PNG folders needs Pillow: pip install 'numpy-mnist[images]'") from None
    root = _find_root(Path(path))
    arrays = {}
    for split in ("train", "valid"):
        rows = [(digit, n, png) for digit in (3, 7) for n, png in _pngs(root / split / str(digit))]
        arrays[f"{split}_images"] = np.stack([_decode(Image, png) for _, _, png in rows])
        arrays[f"{split}_digits"] = np.asarray([digit for digit, _, _ in rows], dtype=np.uint8)
        arrays[f"{split}_indices"] = np.asarray([n for _, n, _ in rows], dtype=np.int32)
    return arrays


def _find_root(path: Path) -> Path:
    for candidate in (path, path / "mnist_sample"):
        if all((candidate / split / digit).is_dir() for split in ("train", "valid") for digit in "37"):
            return candidate
    raise DataError(f"{path}: not the book's mnist_sample folder (expected train/3, train/7, valid/3 "
                    "and valid/7 in it, or in a mnist_sample folder inside it)")


def _pngs(folder: Path) -> list[tuple[int, Path]]:
    """The PNGs of ``folder`` with their integer names ``N``, sorted by them."""
    pngs = [(_NAME.match(file.name), file) for file in folder.iterdir() if file.suffix.lower() == ".png"]
    if unnamed := [file for match, file in pngs if match is None]:
        raise DataError(f"{unnamed[0]}: expected a name N.png with N the image's MNIST index")
    if not pngs:
        raise DataError(f"{folder}: no N.png images in it")
    return sorted((int(match.group(1)), file) for match, file in pngs)


def _decode(Image, png: Path) -> np.ndarray:
    """One 28x28 greyscale PNG as uint8; DataError naming the file on anything else."""
    try:
        with Image.open(png) as image:
            if image.format != "PNG" or image.mode != "L" or image.size != (28, 28):
                raise DataError(f"{png}: expected a 28x28 8-bit greyscale PNG, got "
                                f"{image.format} {image.size[0]}x{image.size[1]} mode {image.mode}")
            return np.asarray(image, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # Pillow signals bad files with many types (OSError, SyntaxError, ...)
        raise DataError(f"{png}: not a readable PNG ({type(exc).__name__}: {exc})") from None
