"""load_book_folder: the book's mnist_sample/{train,valid}/{3,7}/N.png layout, read with Pillow."""

from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from numpy_mnist.data import load_book_folder, load_mnist_sample
from numpy_mnist.data.sample import load_sample_indices
from numpy_mnist.errors import DataError

PER_FOLDER = 4


@pytest.fixture(scope="module")
def book_folder(shared_data, tmp_path_factory) -> Path:
    """A small copy of the book's download: the first few PNGs of each folder of mnist_sample.tgz."""
    root = tmp_path_factory.mktemp("book")
    taken: dict[str, int] = {}
    with tarfile.open(shared_data / "mnist_sample.tgz", "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 4 and parts[-1].endswith(".png"):
                folder = "/".join(parts[1:3])
                if taken.get(folder, 0) < PER_FOLDER:
                    taken[folder] = taken.get(folder, 0) + 1
                    target = root / member.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(tar.extractfile(member).read())
            if len(taken) == 4 and all(n == PER_FOLDER for n in taken.values()):
                break
    (root / "mnist_sample" / "labels.csv").write_text("name,label\n")
    (root / "mnist_sample" / "train" / "3" / ".DS_Store").write_bytes(b"\0\1")
    return root / "mnist_sample"


@pytest.fixture
def folder_copy(book_folder, tmp_path) -> Path:
    return Path(shutil.copytree(book_folder, tmp_path / "mnist_sample"))


def _indices(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.png"))


def test_equals_the_matching_rows_of_the_bundled_sample(book_folder):
    train_x, train_y, valid_x, valid_y = load_book_folder(book_folder)
    sample = dict(zip(("train_x", "train_y", "valid_x", "valid_y"), load_mnist_sample()))
    positions = dict(zip(("train", "valid"), load_sample_indices()))
    for split, x, y in (("train", train_x, train_y), ("valid", valid_x, valid_y)):
        assert x.dtype == y.dtype == np.float32
        assert x.shape == (2 * PER_FOLDER, 784) and y.shape == (2 * PER_FOLDER, 1)
        # an image index N belongs to one image of its split, so it names one row of the sample
        rows = [int(np.flatnonzero(positions[split] == n)[0])
                for digit in (3, 7) for n in _indices(book_folder / split / str(digit))]
        np.testing.assert_array_equal(x, sample[f"{split}_x"][rows])
        np.testing.assert_array_equal(y, sample[f"{split}_y"][rows])
        assert y[:PER_FOLDER].tolist() == [[1.0]] * PER_FOLDER and y[PER_FOLDER:].sum() == 0


def test_the_parent_folder_is_accepted_too(book_folder):
    a, b = load_book_folder(book_folder), load_book_folder(book_folder.parent)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def test_sorted_by_integer_index_not_by_name(folder_copy):
    folder = folder_copy / "valid" / "7"
    names = sorted(folder.glob("*.png"))
    (names[0]).rename(folder / "5.png")
    (names[1]).rename(folder / "40.png")  # "40" < "5" as text
    expected = [np.asarray(_open(folder / f"{n}.png")) for n in _indices(folder)]
    valid_x = load_book_folder(folder_copy)[2]
    np.testing.assert_array_equal(valid_x[PER_FOLDER:] * 255, np.stack(expected).reshape(PER_FOLDER, 784))


def _open(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image)


def test_corrupted_png_is_named(folder_copy):
    bad = sorted((folder_copy / "train" / "7").glob("*.png"))[1]
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(DataError, match="not a readable PNG") as info:
        load_book_folder(folder_copy)
    assert str(bad) in str(info.value)


def test_garbage_named_png_is_named(folder_copy):
    bad = folder_copy / "valid" / "3" / "12.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DataError, match=r"12\.png"):
        load_book_folder(folder_copy)


@pytest.mark.parametrize("size, mode", [((27, 28), "L"), ((28, 28), "RGB"), ((28, 28), "I;16")])
def test_wrong_size_or_mode_is_refused(folder_copy, size, mode):
    from PIL import Image

    bad = folder_copy / "train" / "3" / "99999.png"
    Image.new(mode, size).save(bad)
    with pytest.raises(DataError, match="28x28 8-bit greyscale") as info:
        load_book_folder(folder_copy)
    assert str(bad) in str(info.value)


def test_a_png_not_named_by_its_index(folder_copy):
    shutil.copyfile(next((folder_copy / "train" / "3").glob("*.png")), folder_copy / "train" / "3" / "copy.png")
    with pytest.raises(DataError, match="expected a name N.png"):
        load_book_folder(folder_copy)


def test_empty_class_folder(folder_copy):
    for png in (folder_copy / "valid" / "7").glob("*.png"):
        png.unlink()
    with pytest.raises(DataError, match="no N.png images"):
        load_book_folder(folder_copy)


def test_not_the_layout(tmp_path, folder_copy):
    with pytest.raises(DataError, match="not the book's mnist_sample folder"):
        load_book_folder(tmp_path / "elsewhere")
    shutil.rmtree(folder_copy / "valid" / "3")
    with pytest.raises(DataError, match="valid/3"):
        load_book_folder(folder_copy)


def test_without_pillow_the_message_names_the_extra(book_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match=r"pip install 'numpy-mnist\[images\]'"):
        load_book_folder(book_folder)
