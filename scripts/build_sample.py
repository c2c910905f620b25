"""Build ``numpy_mnist/data/mnist_sample.npz``, the bundled copy of the book's MNIST_SAMPLE.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges (CC BY-SA 3.0); MNIST_SAMPLE
is the 3s and 7s of it that fastai publishes as ``mnist_sample.tgz``.

The archive is unpacked into a temporary folder and read by ``numpy_mnist.data.book_folder``, the
reader of the book's own folder (Pillow decodes the PNGs): uint8 arrays, each class sorted by its
image index ``N`` (the ``N`` of ``N.png``)::

    train_images (12396, 28, 28) uint8    train_digits (12396,) uint8    train_indices (12396,) int32
    valid_images  (2038, 28, 28) uint8    valid_digits  (2038,) uint8    valid_indices  (2038,) int32
    credit ()  str

3s come first, then 7s.  The output is byte-for-byte reproducible: the arrays are written in a fixed
order and ``numpy.savez_compressed`` gives every zip entry the same fixed date (1980-01-01) and
permissions, so a rebuild with the same zlib gives the same SHA-256.  Paste the printed SHA-256 into
``SAMPLE_SHA256`` in ``numpy_mnist/data/sample.py``.

Usage::

    python scripts/build_sample.py [--source ../shared/data/mnist_sample.tgz] [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from numpy_mnist.data.book_folder import read_book_folder
from numpy_mnist.files import atomic_write

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "mnist_sample.tgz"
DEFAULT_OUT = REPO / "numpy_mnist" / "data" / "mnist_sample.npz"
CREDIT = ("MNIST by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, CC BY-SA 3.0; "
          "the 3s and 7s of fastai's MNIST_SAMPLE (mnist_sample.tgz), decoded from its PNGs.")


def read_archive(source: str | os.PathLike) -> dict[str, np.ndarray]:
    """Decode every ``mnist_sample/{train,valid}/{3,7}/N.png`` of the archive into the arrays listed above."""
    with tempfile.TemporaryDirectory() as folder, tarfile.open(source, "r:gz") as tar:
        tar.extractall(folder, filter="data")
        return {**read_book_folder(folder), "credit": np.asarray(CREDIT)}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The ``.npz`` file (compressed) holding ``arrays``, entries in sorted order."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{key: arrays[key] for key in sorted(arrays)})
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="mnist_sample.tgz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the .npz to write")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"{args.source}: no such file (give --source PATH to mnist_sample.tgz)")
    arrays = read_archive(args.source)
    data = npz_bytes(arrays)
    with atomic_write(args.out) as f:
        f.write(data)
    counts = ", ".join(f"{key} {arrays[key].shape[0]}" for key in ("train_images", "valid_images"))
    print(f"wrote {args.out} ({len(data):,} bytes; {counts})")
    print(f"SAMPLE_SHA256 = \"{hashlib.sha256(data).hexdigest()}\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
