"""``numpy-mnist data``: download, locate and verify the full MNIST.

MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges, licensed CC BY-SA 3.0.

::

    numpy-mnist data download [--root DIR] [--mirror URL ...] [--quiet]
    numpy-mnist data path
    numpy-mnist data verify [--root DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from numpy_mnist.data.mnist import DATA_ENV_VAR, default_data_dir, download_mnist, verify_mnist
from numpy_mnist.errors import ChecksumError, DataError


def register(subparsers) -> None:

    p = subparsers.add_parser("data", help="download, locate or verify the full MNIST",
                              description=f"The full MNIST lives in a data folder: ${DATA_ENV_VAR} if set, else "
                                          "$XDG_CACHE_HOME/numpy-mnist (~/.cache/numpy-mnist). The book's 3s and 7s "
                                          "are bundled and need none of this. MNIST: LeCun, Cortes, Burges, "
                                          "CC BY-SA 3.0.")
    actions = p.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    root = argparse.ArgumentParser(add_help=False)  # --root, shared by download and verify
    root.add_argument("--root", type=Path, default=None, metavar="DIR",
                      help="the data folder (default: see `numpy-mnist data path`)")

    download = actions.add_parser("download", help="fetch the four archives, checked, into the data folder",
                                  parents=[root])
    download.add_argument("--mirror", action="append", metavar="URL",
                          help="base URL to fetch from instead of the default mirrors (repeatable)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(run=run_download)

    actions.add_parser("path", help="print the data folder").set_defaults(run=run_path)
    actions.add_parser("verify", help="check the four archives against their published sums",
                       parents=[root]).set_defaults(run=run_verify)


def run_download(args: argparse.Namespace) -> int:
    """Fetch what is missing or wrong, then say what the folder holds, as ``data verify`` does."""
    download_mnist(args.root, mirrors=args.mirror, progress=not args.quiet)
    return run_verify(args)


def run_path(args: argparse.Namespace) -> int:
    print(default_data_dir())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    root = default_data_dir() if args.root is None else args.root
    results = verify_mnist(root)
    for name, status in results.items():
        print(f"{status if status in ('ok', 'missing') else 'BAD':8} {root / name}")
    bad = {name: status for name, status in results.items() if status != "ok"}
    if not bad:
        return 0
    detail = "; ".join(f"{name}: {status}" for name, status in bad.items())
    if any(status.startswith("checksum") for status in bad.values()):
        raise ChecksumError(f"in {root}: {detail} (run `numpy-mnist data download` to fetch them again)")
    raise DataError(f"in {root}: {detail} (run `numpy-mnist data download`)")
