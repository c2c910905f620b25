"""load_mnist_sample: the bundled 3s and 7s equal the IDX files pixel for pixel, and the book's numbers follow."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from numpy_mnist.data import load_mnist_sample, read_idx, sample
from numpy_mnist.errors import ChecksumError, DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_sample():
    return load_mnist_sample()


@pytest.fixture(scope="module")
def idx_threes_and_sevens(shared_data):
    """From the IDX files: {split: (uint8 images of the 3s then the 7s, their indices)}."""
    out = {}
    for split, prefix in (("train", "train"), ("valid", "t10k")):
        images = read_idx(shared_data / "mnist" / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(shared_data / "mnist" / f"{prefix}-labels-idx1-ubyte.gz")
        order = np.concatenate([np.flatnonzero(labels == 3), np.flatnonzero(labels == 7)])
        out[split] = images[order], order
    return out


def test_shapes_dtypes_and_counts(mnist_sample):
    train_x, train_y, valid_x, valid_y = mnist_sample
    assert train_x.shape == (12396, 784) and valid_x.shape == (2038, 784)
    assert train_y.shape == (12396, 1) and valid_y.shape == (2038, 1)
    assert {a.dtype for a in mnist_sample} == {np.dtype(np.float32)}
    for x in (train_x, valid_x):
        assert x.min() == 0.0 and x.max() == 1.0
    for y, threes, sevens in ((train_y, 6131, 6265), (valid_y, 1010, 1028)):
        np.testing.assert_array_equal(y[:, 0], np.r_[np.ones(threes), np.zeros(sevens)])  # 3s first


def test_equals_the_idx_files_pixel_for_pixel(mnist_sample, idx_threes_and_sevens):
    train_x, _, valid_x, _ = mnist_sample
    for x, split in ((train_x, "train"), (valid_x, "valid")):
        images, order = idx_threes_and_sevens[split]
        np.testing.assert_array_equal(x, images.reshape(len(images), 784).astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), images.reshape(len(images), 784))
    train_indices, valid_indices = sample.load_sample_indices()
    np.testing.assert_array_equal(train_indices, idx_threes_and_sevens["train"][1])
    np.testing.assert_array_equal(valid_indices, idx_threes_and_sevens["valid"][1])


def test_pixel_similarity_gives_the_books_accuracies(mnist_sample):
    train_x, train_y, valid_x, valid_y = mnist_sample
    mean3, mean7 = train_x[train_y[:, 0] == 1].mean(0), train_x[train_y[:, 0] == 0].mean(0)
    valid3, valid7 = valid_x[valid_y[:, 0] == 1], valid_x[valid_y[:, 0] == 0]

    def dist(a, b):
        return np.abs(a - b).mean(-1)

    assert round(float((dist(valid3, mean3) < dist(valid3, mean7)).mean()), 4) == 0.9168
    assert round(float((dist(valid7, mean7) < dist(valid7, mean3)).mean()), 4) == 0.9854


def test_each_call_returns_fresh_arrays():
    first, second = load_mnist_sample(), load_mnist_sample()
    first[0][0, 0] = 42.0
    assert second[0][0, 0] == 0.0


def test_bundled_file_is_compact_and_matches_its_checksum():
    data = sample.SAMPLE_FILE.read_bytes()
    assert 2_000_000 < len(data) < 3_000_000
    assert hashlib.sha256(data).hexdigest() == sample.SAMPLE_SHA256
    with np.load(sample.SAMPLE_FILE, allow_pickle=False) as npz:
        assert "LeCun" in str(npz["credit"]) and "CC BY-SA 3.0" in str(npz["credit"])
        assert npz["train_images"].dtype == np.uint8


def test_a_damaged_bundle_raises_checksum_error(tmp_path, monkeypatch):
    damaged = bytearray(sample.SAMPLE_FILE.read_bytes())
    damaged[len(damaged) // 2] ^= 1
    (tmp_path / "mnist_sample.npz").write_bytes(bytes(damaged))
    monkeypatch.setattr(sample, "SAMPLE_FILE", tmp_path / "mnist_sample.npz")
    with pytest.raises(ChecksumError, match="reinstall"):
        load_mnist_sample()


def test_a_missing_bundle_raises_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "SAMPLE_FILE", tmp_path / "gone.npz")
    with pytest.raises(DataError, match="reinstall"):
        load_mnist_sample()


# -- scripts/build_sample.py ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def build_sample():
    spec = importlib.util.spec_from_file_location("build_sample", REPO / "scripts" / "build_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_archive(path: Path) -> dict[tuple[str, int], dict[int, np.ndarray]]:
    """A mnist_sample.tgz with a few made-up images, names chosen so text order != number order."""
    from PIL import Image

    rng = np.random.default_rng(0)
    made: dict[tuple[str, int], dict[int, np.ndarray]] = {}
    with tarfile.open(path, "w:gz") as tar:
        for split in ("valid", "train"):
            for digit in (7, 3):
                for index in (10, 9, 100, 2):
                    pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
                    png = io.BytesIO()
                    Image.fromarray(pixels).save(png, format="PNG")
                    info = tarfile.TarInfo(f"mnist_sample/{split}/{digit}/{index + digit}.png")
                    info.size = len(png.getvalue())
                    tar.addfile(info, io.BytesIO(png.getvalue()))
                    made.setdefault((split, digit), {})[index + digit] = pixels
        info = tarfile.TarInfo("mnist_sample/labels.csv")
        tar.addfile(info, io.BytesIO(b""))
    return made


def test_build_script_orders_by_index_and_is_reproducible(build_sample, tmp_path, capsys):
    made = _tiny_archive(tmp_path / "tiny.tgz")
    arrays = build_sample.read_archive(tmp_path / "tiny.tgz")
    for split in ("train", "valid"):
        expected = [(digit, index) for digit in (3, 7) for index in sorted(made[(split, digit)])]
        assert [tuple(pair) for pair in zip(arrays[f"{split}_digits"], arrays[f"{split}_indices"])] == expected
        np.testing.assert_array_equal(arrays[f"{split}_images"],
                                      np.stack([made[(split, d)][i] for d, i in expected]))
    assert build_sample.npz_bytes(arrays) == build_sample.npz_bytes(build_sample.read_archive(tmp_path / "tiny.tgz"))
    assert build_sample.main(["--source", str(tmp_path / "tiny.tgz"), "--out", str(tmp_path / "out.npz")]) == 0
    digest = hashlib.sha256((tmp_path / "out.npz").read_bytes()).hexdigest()
    assert f'SAMPLE_SHA256 = "{digest}"' in capsys.readouterr().out
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed into place
