"""The data: the book's 3s and 7s (bundled), the full MNIST (downloaded), and minibatches.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

=========================  =======================================================================
:func:`load_mnist_sample`  the book's MNIST_SAMPLE, bundled: ``(train_x, train_y, valid_x, valid_y)``
:func:`load_book_folder`   the same, from the book's own ``mnist_sample/`` PNG folders (Pillow)
:func:`load_mnist`         the full ten-digit MNIST from a data folder
:func:`download_mnist`     fetch the four canonical archives, checked, into the data folder
:func:`verify_mnist`       check the archives in a data folder against their published sums
:func:`default_data_dir`   ``$NUMPY_MNIST_DATA``, else ``$XDG_CACHE_HOME/numpy-mnist``
:func:`read_idx`           one IDX file (gzipped or raw), validated, as uint8
:class:`DataLoader`        minibatches ``(xb, yb)`` on a chosen backend
=========================  =======================================================================

Everything here returns host (NumPy) arrays; :class:`DataLoader` moves them to the backend.
"""

from numpy_mnist.data.book_folder import load_book_folder
from numpy_mnist.data.idx import read_idx
from numpy_mnist.data.loader import DataLoader
from numpy_mnist.data.mnist import default_data_dir, download_mnist, load_mnist, verify_mnist
from numpy_mnist.data.sample import load_mnist_sample

__all__ = [
    "load_mnist_sample",
    "load_book_folder",
    "load_mnist",
    "download_mnist",
    "verify_mnist",
    "default_data_dir",
    "read_idx",
    "DataLoader",
]
