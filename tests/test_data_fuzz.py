"""Fuzzing read_idx: whatever the bytes, the result is an array or a DataError, quickly and cheaply.

Runs with the ``fast`` hypothesis profile by default; ``--hypothesis-profile=thorough`` (or
``NUMPY_MNIST_HYPOTHESIS_PROFILE=thorough``) runs many more examples.
"""

from __future__ import annotations

import gzip
import struct
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_mnist.data import read_idx
from numpy_mnist.errors import DataError

#: A call that takes longer than this is taken as a hang.
HANG_S = 10.0


def outcome(data: bytes):
    """``read_idx(data)``'s array, or the DataError it raised; fails on anything else or a hang."""
    result: dict = {}

    def call():
        try:
            result["value"] = read_idx(data)
        except DataError as exc:
            result["value"] = exc
        except BaseException as exc:  # noqa: BLE001 -- reported below, in the test's thread
            result["other"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"read_idx hung on {len(data)} bytes: {data[:40]!r}..."
    assert "other" not in result, f"read_idx raised {result['other']!r}, not a DataError"
    value = result["value"]
    if isinstance(value, np.ndarray):
        assert value.dtype == np.uint8
        assert value.ndim in (1, 3)
    return value


@pytest.fixture(scope="module")
def real_prefix(shared_data) -> bytes:
    """A small valid IDX file: the header of t10k-images rewritten for its first 3 images."""
    raw = gzip.decompress((shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    return struct.pack(">IIII", 2051, 3, 28, 28) + raw[16:16 + 3 * 784]


@given(st.binary(max_size=512))
def test_random_bytes(data):
    outcome(data)


@given(st.binary(max_size=64))
def test_random_bytes_behind_a_valid_looking_magic(data):
    for magic in (b"\0\0\x08\x01", b"\0\0\x08\x03"):
        outcome(magic + data)
        outcome(gzip.compress(magic + data, mtime=0))


@given(st.data())
def test_every_truncation_of_a_real_file_is_a_data_error(real_prefix, data):
    cut = data.draw(st.integers(0, len(real_prefix) - 1), label="cut")
    assert isinstance(outcome(real_prefix[:cut]), DataError)
    assert isinstance(outcome(gzip.compress(real_prefix[:cut], mtime=0)), DataError)
    compressed = gzip.compress(real_prefix, mtime=0)
    gz_cut = data.draw(st.integers(0, len(compressed) - 1), label="gz_cut")
    assert isinstance(outcome(compressed[:gz_cut]), DataError)


@given(st.data())
def test_flipped_bytes_in_a_real_gzip_file(real_prefix, data):
    compressed = bytearray(gzip.compress(real_prefix, mtime=0))
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(compressed) - 1))
        compressed[at] = data.draw(st.integers(0, 255))
    value = outcome(bytes(compressed))
    if isinstance(value, np.ndarray):  # only a flip in the gzip header's free fields can leave it valid
        np.testing.assert_array_equal(value, np.frombuffer(real_prefix[16:], np.uint8).reshape(3, 28, 28))


@given(ndim=st.sampled_from([1, 3]), dims=st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3),
       payload=st.binary(max_size=256), compress=st.booleans())
def test_forged_header_sizes_never_allocate(ndim, dims, payload, compress):
    data = struct.pack(f">I{ndim}I", 0x800 + ndim, *dims[:ndim]) + payload
    if compress:
        data = gzip.compress(data, mtime=0)
    tracemalloc.start()
    try:
        value = outcome(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak:,} bytes allocated for a {len(data)}-byte input"
    if isinstance(value, np.ndarray):
        assert value.size == int(np.prod(dims[:ndim])) == len(payload)
