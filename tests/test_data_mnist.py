"""load_mnist, default_data_dir, verify_mnist and `numpy-mnist data path|verify` (no network)."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from numpy_mnist.cli import main
from numpy_mnist.data import default_data_dir, load_mnist, mnist, verify_mnist
from numpy_mnist.errors import DataError

NAMES = list(mnist.MNIST_FILES)


def test_full_mnist_from_the_shared_files(shared_data):
    train_x, train_y, test_x, test_y = load_mnist(shared_data / "mnist")
    assert train_x.shape == (60000, 784) and test_x.shape == (10000, 784)
    assert train_y.shape == (60000,) and test_y.shape == (10000,)
    assert train_x.dtype == test_x.dtype == np.float32
    assert train_y.dtype == test_y.dtype == np.int64
    assert 0.0 == train_x.min() and train_x.max() == 1.0
    assert np.bincount(train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(test_y, minlength=10).sum() == 10000


# -- a tiny MNIST folder, to test the structure checks cheaply ------------------------------------

def _idx(values: np.ndarray) -> bytes:
    magic = {1: 0x801, 3: 0x803}[values.ndim]
    return struct.pack(f">I{values.ndim}I", magic, *values.shape) + values.astype(np.uint8).tobytes()


def write_tiny_mnist(root: Path, n_train=5, n_test=3, *, compress=True, labels=None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files = {f"{prefix}-images-idx3-ubyte": rng.integers(0, 256, (n, 28, 28)),
                 f"{prefix}-labels-idx1-ubyte": np.arange(n) % 10 if labels is None else labels[:n]}
        for name, values in files.items():
            data = _idx(np.asarray(values))
            if compress:
                (root / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                (root / name).write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_tiny_folder_gzipped_or_raw(tmp_path, compress):
    write_tiny_mnist(tmp_path, compress=compress)
    train_x, train_y, test_x, test_y = load_mnist(tmp_path)
    assert train_x.shape == (5, 784) and test_x.shape == (3, 784)
    assert train_y.tolist() == [0, 1, 2, 3, 4] and test_y.dtype == np.int64
    raw = gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz").read_bytes()) if compress else \
        (tmp_path / "train-images-idx3-ubyte").read_bytes()
    np.testing.assert_array_equal(train_x * 255, np.frombuffer(raw[16:], np.uint8).reshape(5, 784))


def test_root_defaults_to_the_data_dir(tmp_path, monkeypatch):
    write_tiny_mnist(tmp_path / "env")
    monkeypatch.setenv("NUMPY_MNIST_DATA", str(tmp_path / "env"))
    assert load_mnist()[0].shape == (5, 784)


def test_missing_files_are_named_with_the_fix(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "train-images" not in message
    assert "numpy-mnist data download" in message and "--data" in message and str(tmp_path) in message


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_counts_of_images_and_labels_must_agree(tmp_path):
    write_tiny_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(4))))
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        load_mnist(tmp_path)


def test_labels_must_be_digits(tmp_path):
    write_tiny_mnist(tmp_path, labels=np.array([1, 2, 10, 3, 4]))
    with pytest.raises(DataError, match="labels must be 0-9, found 10"):
        load_mnist(tmp_path)


def test_files_swapped(tmp_path):
    write_tiny_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    data = images.read_bytes()
    images.write_bytes(labels.read_bytes())
    labels.write_bytes(data)
    with pytest.raises(DataError, match="expected 28x28 images"):
        load_mnist(tmp_path)


def test_a_corrupt_file_is_named(tmp_path):
    write_tiny_mnist(tmp_path)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-9])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)


# -- default_data_dir ------------------------------------------------------------------------------

def test_data_dir_env_var_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMPY_MNIST_DATA", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "mine"


def test_data_dir_honours_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMPY_MNIST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "numpy-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "numpy-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("NUMPY_MNIST_DATA", "")
    assert default_data_dir() == tmp_path / "home" / ".cache" / "numpy-mnist"


# -- verify ----------------------------------------------------------------------------------------

@pytest.fixture
def mnist_copy(shared_data, tmp_path) -> Path:
    root = tmp_path / "mnist"
    shutil.copytree(shared_data / "mnist", root)
    for path in root.iterdir():
        path.chmod(0o644)
    return root


def test_verify(mnist_copy):
    assert verify_mnist(mnist_copy) == dict.fromkeys(NAMES, "ok")
    (mnist_copy / NAMES[1]).unlink()
    damaged = bytearray((mnist_copy / NAMES[3]).read_bytes())
    damaged[100] ^= 1
    (mnist_copy / NAMES[3]).write_bytes(bytes(damaged))
    result = verify_mnist(mnist_copy)
    assert result[NAMES[0]] == result[NAMES[2]] == "ok"
    assert result[NAMES[1]] == "missing"
    assert result[NAMES[3]].startswith("checksum mismatch") and mnist.MNIST_FILES[NAMES[3]].sha256 in result[NAMES[3]]


def test_sums_are_those_of_the_shared_sha256sums(shared_data):
    listed = dict(reversed(line.split()) for line in (shared_data / "SHA256SUMS").read_text().splitlines())
    for name, sums in mnist.MNIST_FILES.items():
        assert listed[f"mnist/{name}"] == sums.sha256
        assert (shared_data / "mnist" / name).stat().st_size == sums.size
        assert sums.md5 in (shared_data / "README.md").read_text()


# -- the command line ------------------------------------------------------------------------------

def test_cli_data_path(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("NUMPY_MNIST_DATA", str(tmp_path))
    assert main(["data", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)


def test_cli_data_verify(mnist_copy, capsys):
    assert main(["data", "verify", "--root", str(mnist_copy)]) == 0
    assert capsys.readouterr().out.count("ok ") == 4
    damaged = bytearray((mnist_copy / NAMES[0]).read_bytes())
    damaged[-1] ^= 1
    (mnist_copy / NAMES[0]).write_bytes(bytes(damaged))
    assert main(["data", "verify", "--root", str(mnist_copy)]) == 2
    captured = capsys.readouterr()
    assert f"BAD      {mnist_copy / NAMES[0]}" in captured.out
    error = captured.err.strip()
    assert error.startswith("numpy-mnist data: error:") and "\n" not in error
    assert NAMES[0] in error and "checksum" in error


def test_cli_data_verify_missing(tmp_path, capsys):
    assert main(["data", "verify", "--root", str(tmp_path)]) == 2
    assert "missing" in capsys.readouterr().err


def test_cli_data_needs_an_action(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data"])
    assert info.value.code == 2
    assert "ACTION" in capsys.readouterr().err
