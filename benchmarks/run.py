#!/usr/bin/env python
"""The full benchmark (references, the book's sizes, the sweep, whole runs) into benchmarks/results/.

    python benchmarks/run.py                  # about 20 minutes on a 2-core CPU (whole ResNet-18 epochs)
    python benchmarks/run.py --wait-quiet 0.2 # first wait until other programs use <= 0.2 cores

It is ``numpy-mnist bench --sweep --out benchmarks/results`` followed by any further options.
"""

import sys
from pathlib import Path

from numpy_mnist.cli import main

if __name__ == "__main__":
    results = Path(__file__).resolve().parent / "results"
    sys.exit(main(["bench", "--sweep", "--out", str(results), *sys.argv[1:]]))
