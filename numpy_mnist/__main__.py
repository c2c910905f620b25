"""``python -m numpy_mnist`` is the ``numpy-mnist`` command."""

import sys

from numpy_mnist.cli import main

if __name__ == "__main__":
    sys.exit(main())
