"""DataLoader: batch sizes, order, shuffling per seed and epoch, backends, and bad arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from numpy_mnist.backends import get_backend
from numpy_mnist.data import DataLoader
from numpy_mnist.errors import InputError

BACKENDS = ("numpy", "array_api_strict")


def dataset(n: int = 10):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = (np.arange(n) % 2).astype(np.float32).reshape(n, 1)
    return x, y


def host_batches(loader: DataLoader):
    return [(loader.backend.to_host(xb), loader.backend.to_host(yb)) for xb, yb in loader]


@pytest.mark.parametrize("name", BACKENDS)
def test_batches_in_order_on_each_backend(name):
    backend = get_backend(name)
    x, y = dataset(10)
    loader = DataLoader(x, y, batch_size=4, backend=backend)
    assert len(loader) == 3
    batches = list(loader)
    assert all(backend.owns(xb) and backend.owns(yb) for xb, yb in batches)
    assert all(xb.dtype == backend.dtype for xb, _ in batches)
    host = host_batches(loader)
    assert [xb.shape[0] for xb, _ in host] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in host]), x)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in host]), y)


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_by_name_and_float64(name):
    x, y = dataset(6)
    loader = DataLoader(x, y, batch_size=6, backend=get_backend(name, "float64"))
    (xb, yb), = list(loader)
    assert xb.dtype == loader.backend.xp.float64 and tuple(xb.shape) == (6, 3)
    assert DataLoader(x, y, backend=name).backend.name == name


def test_integer_labels_keep_their_dtype():
    x, _ = dataset(5)
    loader = DataLoader(x, np.arange(5), batch_size=2)
    assert all(yb.dtype == np.int64 for _, yb in loader)


def test_drop_last():
    x, y = dataset(10)
    loader = DataLoader(x, y, batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [xb.shape[0] for xb, _ in loader] == [4, 4]
    assert len(DataLoader(x, y, batch_size=5, drop_last=True)) == 2  # exact fit: nothing dropped


def test_the_books_defaults_on_the_sample():
    from numpy_mnist.data import load_mnist_sample

    train_x, train_y, _, _ = load_mnist_sample()
    loader = DataLoader(train_x, train_y)
    assert loader.batch_size == 256 and not loader.shuffle and not loader.drop_last
    sizes = [xb.shape[0] for xb, _ in loader]
    assert len(loader) == len(sizes) == math.ceil(12396 / 256) == 49
    assert sizes[-1] == 12396 - 48 * 256
    xb, yb = next(iter(loader))
    assert xb.shape == (256, 784) and yb.shape == (256, 1)


def test_without_shuffle_every_epoch_is_the_same():
    x, y = dataset(7)
    loader = DataLoader(x, y, batch_size=3)
    first, second = host_batches(loader), host_batches(loader)
    for (a, _), (b, _) in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert loader.epoch == 2


def _order(loader: DataLoader) -> list[int]:
    """The row order of the next epoch, read off the batches (x[:, 0] = 3 * row)."""
    return [int(v) // 3 for xb, _ in host_batches(loader) for v in xb[:, 0]]


@pytest.mark.parametrize("name", BACKENDS)
def test_shuffle_is_a_permutation_reproducible_per_seed_and_epoch(name):
    x, y = dataset(50)
    loader = DataLoader(x, y, batch_size=8, shuffle=True, seed=3, backend=name)
    epoch0, epoch1 = _order(loader), _order(loader)
    assert sorted(epoch0) == sorted(epoch1) == list(range(50))
    assert epoch0 != epoch1 != list(range(50))
    assert epoch0 == np.random.default_rng([3, 0]).permutation(50).tolist() == loader.order(0).tolist()
    twin = DataLoader(x, y, batch_size=8, shuffle=True, seed=3, backend=name)
    assert _order(twin) == epoch0 and _order(twin) == epoch1
    other_seed = DataLoader(x, y, batch_size=8, shuffle=True, seed=4, backend=name)
    assert _order(other_seed) != epoch0


def test_shuffled_rows_keep_x_and_y_together():
    x, _ = dataset(40)
    y = np.arange(40).reshape(40, 1)
    for xb, yb in DataLoader(x, y, batch_size=16, shuffle=True, seed=1):
        np.testing.assert_array_equal(xb[:, 0] // 3, yb[:, 0])


def test_set_epoch_resumes_the_order_of_that_epoch():
    x, y = dataset(30)
    loader = DataLoader(x, y, batch_size=7, shuffle=True, seed=11)
    orders = [_order(loader) for _ in range(3)]
    resumed = DataLoader(x, y, batch_size=7, shuffle=True, seed=11)
    resumed.set_epoch(2)
    assert _order(resumed) == orders[2]
    assert resumed.epoch == 3


def test_shuffle_with_drop_last_drops_a_different_tail_each_epoch():
    x, y = dataset(10)
    loader = DataLoader(x, y, batch_size=4, shuffle=True, drop_last=True, seed=0)
    seen = [set(_order(loader)) for _ in range(4)]
    assert all(len(rows) == 8 for rows in seen)
    assert len(set.union(*seen)) > 8


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_bad_batch_size(batch_size):
    x, y = dataset(4)
    with pytest.raises(InputError, match="batch_size"):
        DataLoader(x, y, batch_size=batch_size)


def test_bad_datasets():
    x, y = dataset(4)
    with pytest.raises(InputError, match="same number of rows, got 4 and 3"):
        DataLoader(x, y[:3])
    with pytest.raises(InputError, match="empty"):
        DataLoader(x[:0], y[:0])
    with pytest.raises(InputError, match="scalar"):
        DataLoader(np.float32(1), y)
    with pytest.raises(InputError, match="drop_last"):
        DataLoader(x, y, batch_size=5, drop_last=True)


def test_repr_names_the_settings():
    x, y = dataset(4)
    text = repr(DataLoader(x, y, batch_size=2, shuffle=True))
    assert "4 rows" in text and "batch_size=2" in text and "shuffle=True" in text and "numpy" in text
