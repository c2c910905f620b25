"""The full MNIST (ten digits, 60,000 training and 10,000 test images): download, verify, load.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

The four canonical archives are fetched from the mirrors torchvision uses, checked against their
published MD5 and SHA-256, and kept in a data folder: ``$NUMPY_MNIST_DATA`` if set, otherwise
``$XDG_CACHE_HOME/numpy-mnist`` (``~/.cache/numpy-mnist``).  A download is held in memory (10 MB
at most), checked, and only then written atomically (a temporary file beside its target, fsynced,
renamed into place), so the folder never holds a half-written or unverified archive.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

from numpy_mnist import __version__
from numpy_mnist.data.idx import read_idx
from numpy_mnist.errors import ChecksumError, DataError
from numpy_mnist.files import atomic_write

__all__ = ["load_mnist", "download_mnist", "verify_mnist", "default_data_dir",
           "MNIST_FILES", "MIRRORS", "DATA_ENV_VAR"]

#: Environment variable naming the data folder.
DATA_ENV_VAR = "NUMPY_MNIST_DATA"

#: The mirrors torchvision downloads MNIST from, tried in this order.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


class FileSums(NamedTuple):
    """A canonical archive's size in bytes and published digests."""

    size: int
    md5: str
    sha256: str


#: The four canonical archives (train images, train labels, test images, test labels).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": FileSums(9912422, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                           "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": FileSums(28881, "d53e105ee54ea40749a09fcbcd1e9432",
                                           "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": FileSums(1648877, "9fb629c4189551a2d022fa330f9573f3",
                                          "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": FileSums(4542, "ec29112dd5afa0611ce80d1b7f02629c",
                                          "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

def default_data_dir() -> Path:
    """Where MNIST is kept: ``$NUMPY_MNIST_DATA``, else ``$XDG_CACHE_HOME/numpy-mnist``,
    else ``~/.cache/numpy-mnist``."""
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"  # XDG: relative is invalid
    return base / "numpy-mnist"


def load_mnist(root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The full MNIST: ``(train_x, train_y, test_x, test_y)`` as host arrays.

    ``x`` is float32 of shape ``(N, 784)`` scaled to ``[0, 1]``; ``y`` is int64 of shape ``(N,)``
    with labels 0-9; N is 60,000 for train and 10,000 for test.  Each file is read from ``root``
    (default :func:`default_data_dir`) gzipped (``*.gz``) or uncompressed (the same name without
    ``.gz``); :func:`download_mnist` fetches them.

    Raises
    ------
    DataError
        A file is missing (the message says which, and how to get it), or is not a valid IDX
        file, or the images and labels disagree.
    """
    root = default_data_dir() if root is None else Path(root)
    paths = {name: _find(root, name) for name in MNIST_FILES}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        where = f"{root} does not exist" if not root.is_dir() else f"missing in {root}"
        raise DataError(f"MNIST file(s) {', '.join(missing)} not found ({where}): run `numpy-mnist data download` "
                        "(with --root DIR to choose the folder), or name a folder that holds the four MNIST files "
                        "(numpy-mnist train --data DIR)")
    train = _pair(paths["train-images-idx3-ubyte.gz"], paths["train-labels-idx1-ubyte.gz"])
    test = _pair(paths["t10k-images-idx3-ubyte.gz"], paths["t10k-labels-idx1-ubyte.gz"])
    return train + test


def _find(root: Path, name: str) -> Path | None:
    return next((path for path in (root / name, root / name.removesuffix(".gz")) if path.is_file()), None)


def _pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected 28x28 images, the IDX header gives shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D IDX file of labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be 0-9, found {int(labels.max())}")
    return np.divide(images.reshape(len(images), -1), np.float32(255), dtype=np.float32), labels.astype(np.int64)


def verify_mnist(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Check the four archives in ``root`` against their published sums.

    Returns ``{file name: status}`` where status is ``"ok"``, ``"missing"`` or a description of
    the mismatch.  Raises nothing for a bad file: the caller decides.
    """
    root = default_data_dir() if root is None else Path(root)
    return {name: _check(root / name, sums) for name, sums in MNIST_FILES.items()}


def _check(path: Path, sums: FileSums) -> str:
    if not path.is_file():
        return "missing"
    try:
        return _mismatch(path.read_bytes(), sums) or "ok"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"


def _mismatch(data: bytes, sums: FileSums) -> str | None:
    """What differs between ``data``'s MD5 and SHA-256 and the published ones, or None."""
    md5, sha256 = hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()
    if (md5, sha256) == (sums.md5, sums.sha256):
        return None
    return f"checksum mismatch: sha256 {sha256}, expected {sums.sha256} (md5 {md5}, expected {sums.md5})"


def download_mnist(root: str | os.PathLike | None = None, mirrors: list[str] | tuple[str, ...] | None = None,
                   progress: bool = True, *, timeout: float = 60.0) -> Path:
    """Fetch the four MNIST archives into ``root`` (default :func:`default_data_dir`).

    A file already present with the right sums is kept.  Each file is tried on every mirror in
    turn (``mirrors`` default :data:`MIRRORS`; each a base URL the file name is appended to) until
    one gives exactly the published bytes.  Returns the folder.

    Raises
    ------
    ChecksumError
        A mirror served bytes whose MD5 or SHA-256 differ from the published ones (and no mirror
        served the right ones).
    DataError
        No mirror could deliver the file (not found, connection failed, truncated transfer), or the
        folder cannot be written.
    """
    root = default_data_dir() if root is None else Path(root)
    mirrors = MIRRORS if mirrors is None else tuple(mirrors)
    if not mirrors:
        raise DataError("no mirror to download MNIST from")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {root} ({exc.strerror or exc})") from None
    for name, sums in MNIST_FILES.items():
        if _check(root / name, sums) == "ok":
            continue
        failures: list[DataError] = []
        for base in mirrors:  # each a base URL, with or without its trailing slash
            try:
                _fetch(f"{base.removesuffix('/')}/{name}", root / name, sums, progress, timeout)
                break
            except DataError as exc:
                failures.append(exc)
        else:
            kind = ChecksumError if any(isinstance(e, ChecksumError) for e in failures) else DataError
            raise kind(f"{name}: could not be downloaded from any mirror: {'; '.join(map(str, failures))}")
    return root


def _fetch(url: str, target: Path, sums: FileSums, progress: bool, timeout: float) -> None:
    """Download ``url`` (at most the expected bytes, in memory) and, only when it is complete and
    its sums are the published ones, write it to ``target`` through
    :func:`~numpy_mnist.files.atomic_write`; a truncated or wrong download never touches ``target``."""
    from tqdm import tqdm

    try:
        request = urllib.request.Request(url, headers={"User-Agent": f"numpy-mnist/{__version__}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data, announced = bytearray(), response.length  # Content-Length, if the server sent one
            with tqdm(total=announced or sums.size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=target.name, disable=not progress, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    data += chunk
                    if len(data) > sums.size:
                        raise DataError(f"{url}: more than the expected {sums.size:,} bytes")
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        exc.close()  # an HTTPError is also an open response
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DataError(f"{url}: {exc.reason}") from None
    except ValueError as exc:
        raise DataError(f"{url}: not a usable URL ({exc})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise DataError(f"{url}: transfer failed ({type(exc).__name__}: {exc})") from None
    if len(data) < sums.size:  # http.client returns b"" on a connection closed early; no error
        promised = f" ({announced:,} announced)" if announced else ""
        raise DataError(f"{url}: truncated download, {len(data):,} of {sums.size:,} bytes{promised}")
    if mismatch := _mismatch(bytes(data), sums):
        raise ChecksumError(f"{url}: {target.name}: {mismatch}")
    with atomic_write(target) as f:
        f.write(data)
