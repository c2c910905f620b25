"""Reading IDX files, the format MNIST is published in, gzipped or raw.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the values, row-major.  MNIST uses two kinds, both of unsigned bytes
(dtype ``0x08``): images (magic 2051 = ``0x00000803``: count, rows, columns) and labels
(magic 2049 = ``0x00000801``: count).

The reader trusts nothing in the file.  The sizes in the header are compared with the real length
of the data *before* anything of that size is allocated, and a gzipped file is decompressed in
bounded steps, so a forged header or a gzip bomb ends in a :class:`~numpy_mnist.errors.DataError`
instead of a huge allocation.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from numpy_mnist.errors import DataError

__all__ = ["read_idx", "IDX_MAGICS", "MAX_BYTES"]

#: The magic numbers this reader accepts, and what they mean.
IDX_MAGICS = {0x00000803: "images (ubyte, 3 dims)", 0x00000801: "labels (ubyte, 1 dim)"}

#: Default ceiling on the decompressed size (1 GiB; all of MNIST is 55 MB).
MAX_BYTES = 1 << 30

_GZIP_MAGIC = b"\x1f\x8b"
#: Deflate cannot expand data more than about 1032 times; a header that needs more is a lie.
_MAX_DEFLATE_RATIO = 1032


def read_idx(source: str | os.PathLike | bytes | bytearray | memoryview, *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read one IDX file of unsigned bytes and return its values as a ``uint8`` array.

    Parameters
    ----------
    source : path or bytes
        A file name, or the file's contents.  Gzip is recognised by its magic bytes
        (``1f 8b``), not by the name.
    max_bytes : int
        Refuse a file whose header claims more values than this (default 1 GiB).

    Returns
    -------
    numpy.ndarray
        ``uint8``, shape ``(count, rows, cols)`` for images, ``(count,)`` for labels.

    Raises
    ------
    DataError
        The file is missing or unreadable, is not an IDX file of ubyte images or labels, is
        truncated, has bytes after its data, or claims a size it does not have.  The message
        names the file and the problem.
    """
    name, raw = _read_source(source)
    if raw[:2] != _GZIP_MAGIC:
        return _parse(name, io.BytesIO(raw), math.inf, max_bytes)  # a read returns at most what the file holds
    # gzip decompresses only as far as asked (so memory stays within what _parse reads), reads files
    # of several members, skips zero padding after the end, and checks each member's CRC-32 and length.
    try:
        return _parse(name, gzip.GzipFile(fileobj=io.BytesIO(raw)), len(raw) * _MAX_DEFLATE_RATIO, max_bytes)
    except EOFError:
        raise DataError(f"{name}: truncated gzip stream (the compressed data ends early)") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        what = "garbage after the gzip data" if "Not a gzipped file" in str(exc) else f"corrupt gzip data ({exc})"
        raise DataError(f"{name}: {what}") from None


def _read_source(source) -> tuple[str, bytes | memoryview]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>", memoryview(source).cast("B")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"read_idx takes a path or bytes, got {type(source).__name__}")
    path = Path(source)
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an IDX file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _parse(name: str, stream, most_possible: float, max_bytes: int) -> np.ndarray:
    """Read the header from ``stream``, check it, then read exactly the values it announces."""
    magic_bytes = stream.read(4)
    if len(magic_bytes) < 4:
        raise DataError(f"{name}: truncated IDX file: {len(magic_bytes)} bytes, too short for a header")
    if magic_bytes[:2] != b"\x00\x00":
        raise DataError(f"{name}: not an IDX file (magic bytes {magic_bytes.hex()}, expected 0000 08 01/03)")
    magic, dtype, ndim = int.from_bytes(magic_bytes, "big"), magic_bytes[2], magic_bytes[3]
    if magic not in IDX_MAGICS:
        raise DataError(f"{name}: unsupported IDX magic {magic} (dtype code 0x{dtype:02x}, {ndim} dims); expected "
                        "2051 (ubyte images, 3 dims) or 2049 (ubyte labels, 1 dim)")
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{name}: truncated IDX header: {ndim} sizes announced, "
                        f"only {len(dims_bytes)} of {4 * ndim} bytes present")
    shape = tuple(int.from_bytes(dims_bytes[4 * i:4 * i + 4], "big") for i in range(ndim))
    expected, header = math.prod(shape), 4 + 4 * ndim
    if expected > max_bytes:
        raise DataError(f"{name}: header claims shape {shape} = {expected:,} bytes, over the limit of {max_bytes:,}")
    if header + expected > most_possible:
        raise DataError(f"{name}: header claims shape {shape} = {expected:,} bytes, "
                        f"but the file cannot hold more than {most_possible - header:,}")
    data = stream.read(expected)
    if len(data) < expected:
        raise DataError(f"{name}: truncated: header claims shape {shape} = {expected:,} bytes of data, "
                        f"found {len(data):,}")
    if stream.read(1):  # for gzip, reading to the end also checks the CRC-32 of the last member
        raise DataError(f"{name}: trailing bytes after the {expected:,} bytes of data of shape {shape}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()  # writable, and the caller's own
