"""read_idx: the real MNIST files, gzip and raw, and every way a file can be wrong."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest

from numpy_mnist.data import read_idx
from numpy_mnist.errors import DataError


def idx(values: np.ndarray) -> bytes:
    """An IDX file of ubyte ``values`` (1-D labels or 3-D images)."""
    values = np.asarray(values, dtype=np.uint8)
    magic = {1: 0x801, 3: 0x803}[values.ndim]
    return struct.pack(f">I{values.ndim}I", magic, *values.shape) + values.tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


IMAGES = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
LABELS = np.array([3, 7, 0, 9], dtype=np.uint8)


@pytest.fixture(scope="module")
def t10k_labels_gz(shared_data) -> bytes:
    return (shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()


def test_real_files_gzip_and_raw_agree(shared_data, tmp_path):
    for name, shape in [("t10k-images-idx3-ubyte.gz", (10000, 28, 28)), ("t10k-labels-idx1-ubyte.gz", (10000,))]:
        path = shared_data / "mnist" / name
        from_gz = read_idx(path)
        assert from_gz.shape == shape and from_gz.dtype == np.uint8
        raw = gzip.decompress(path.read_bytes())
        np.testing.assert_array_equal(read_idx(raw), from_gz)
        (tmp_path / name.removesuffix(".gz")).write_bytes(raw)
        np.testing.assert_array_equal(read_idx(tmp_path / name.removesuffix(".gz")), from_gz)
        np.testing.assert_array_equal(read_idx(str(path)), from_gz)


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    (tmp_path / "labels.gz").write_bytes(idx(LABELS))
    (tmp_path / "labels.idx").write_bytes(gz(idx(LABELS)))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), LABELS)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.idx"), LABELS)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like_input_and_writable_result(kind):
    out = read_idx(kind(idx(IMAGES)))
    np.testing.assert_array_equal(out, IMAGES)
    assert out.flags.writeable and out.flags.c_contiguous
    out[0, 0, 0] = 1  # a copy, not a view of the input


def test_empty_but_valid_file():
    assert read_idx(idx(np.zeros((0,), np.uint8))).shape == (0,)
    assert read_idx(gz(idx(np.zeros((0, 28, 28), np.uint8)))).shape == (0, 28, 28)


def test_multi_member_gzip_and_zero_padding_read_as_gzip_does():
    data = idx(IMAGES)
    two_members = gz(data[:100]) + gz(data[100:])
    np.testing.assert_array_equal(read_idx(two_members), IMAGES)
    np.testing.assert_array_equal(read_idx(gz(data) + b"\0" * 10), IMAGES)


GOOD = idx(LABELS)
CASES = {
    "empty": (b"", "too short for a header"),
    "short": (GOOD[:3], "too short for a header"),
    "not idx": (b"PK\x03\x04" + GOOD[4:], "not an IDX file"),
    "float dtype": (b"\0\0\x0d\x01" + GOOD[4:], "unsupported IDX magic"),
    "2 dims": (b"\0\0\x08\x02" + GOOD[4:], "unsupported IDX magic"),
    "truncated header": (idx(IMAGES)[:10], "truncated IDX header"),
    "truncated data": (GOOD[:-1], "truncated"),
    "trailing bytes": (GOOD + b"\0", "trailing bytes"),
    "gz truncated data": (gz(GOOD[:-1]), "truncated"),
    "gz trailing bytes": (gz(GOOD + b"\1"), "trailing bytes"),
    "gz stream cut": (gz(idx(IMAGES))[:-20], "truncated gzip stream"),
    "gz garbage after": (gz(GOOD) + b"junk", "garbage after the gzip data"),
    "gz crc wrong": (gz(GOOD)[:-8] + b"\0\0\0\0" + gz(GOOD)[-4:], "corrupt gzip data"),
    "gz not deflate": (b"\x1f\x8b" + b"\xff" * 30, "corrupt gzip data"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_files_raise_data_error_naming_the_problem(case, tmp_path):
    data, words = CASES[case]
    with pytest.raises(DataError, match=words):
        read_idx(data)
    path = tmp_path / f"{case.replace(' ', '-')}.idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=str(path)):
        read_idx(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such file") as info:
        read_idx(tmp_path / "nope-idx1-ubyte.gz")
    assert "nope-idx1-ubyte.gz" in str(info.value)
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


def test_wrong_argument_type_is_a_type_error():
    with pytest.raises(TypeError, match="path or bytes"):
        read_idx(12)


def _forged(dims: tuple[int, ...], payload: bytes = b"") -> bytes:
    return struct.pack(f">I{len(dims)}I", 0x800 + len(dims), *dims) + payload


def test_forged_huge_header_is_refused_before_allocating():
    forged = _forged((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), b"\0" * 100)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="over the limit"):
            read_idx(forged)
        with pytest.raises(DataError, match="over the limit"):
            read_idx(gz(forged))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_header_claiming_more_than_the_gzip_can_hold_is_refused_at_once():
    forged = gz(_forged((1000, 1000, 1000), b"\0" * 100))  # 1 GB claimed from ~100 bytes
    with pytest.raises(DataError, match="cannot hold more than"):
        read_idx(forged, max_bytes=1 << 40)
    with pytest.raises(DataError, match="truncated"):
        read_idx(_forged((1000, 1000, 1000), b"\0" * 100), max_bytes=1 << 40)


def test_gzip_bomb_is_decompressed_only_as_far_as_the_header_allows():
    bomb = gzip.compress(_forged((10,), bytes(20_000_000)), compresslevel=1)  # 20 MB of zeros in 90 kB
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="trailing bytes"):
            read_idx(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_max_bytes_limits_an_honest_but_large_file():
    big = gz(_forged((2000, 28, 28), bytes(2000 * 784)))
    assert read_idx(big).shape == (2000, 28, 28)
    with pytest.raises(DataError, match="over the limit of 1,000"):
        read_idx(big, max_bytes=1000)


def test_real_file_with_a_flipped_byte_is_caught(t10k_labels_gz):
    broken = bytearray(t10k_labels_gz)
    broken[len(broken) // 2] ^= 0xFF
    with pytest.raises(DataError):
        read_idx(bytes(broken))
