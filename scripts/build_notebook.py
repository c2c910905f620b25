"""Rebuild ``notebooks/04_mnist_basics_by_hand.ipynb``, outputs included, from its source ``.py``.

The source is ``notebooks/04_mnist_basics_by_hand.py``, a jupytext ``py:percent`` script paired with
the ``.ipynb``: edit it (or the ``.ipynb`` in Jupyter with jupytext installed, which keeps the two in
sync), then run::

    python scripts/build_notebook.py --data DIR    # DIR: the four MNIST IDX files, for the ten digits

It runs the cells top to bottom in a fresh ``python3`` kernel (nbclient), this checkout first on the
kernel's ``PYTHONPATH``, and writes the ``.ipynb`` atomically.  ``--data`` (default
``$NUMPY_MNIST_DATA``, else ``numpy-mnist data download``'s cache) serves only the ten-digit section.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "notebooks" / "04_mnist_basics_by_hand.py"
NOTEBOOK = SOURCE.with_suffix(".ipynb")


def kernel_env(data: str | os.PathLike | None = None) -> dict[str, str]:
    """The kernel's environment: this checkout first on ``PYTHONPATH``, the MNIST folder if given."""
    env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    if data is not None:
        env["NUMPY_MNIST_DATA"] = str(Path(data).resolve())
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, metavar="DIR", help="folder of the four MNIST IDX files")
    args = parser.parse_args(argv)
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    import jupytext
    from nbclient import NotebookClient

    from numpy_mnist.files import atomic_write

    nb = jupytext.read(SOURCE)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: a rebuild changes only what really changed
    with tempfile.TemporaryDirectory() as cwd:
        # iopub_timeout: on a loaded machine a cell's output can come after nbclient's default 4 s wait for it
        # and be dropped without a word; wait longer, and fail loudly if it still does not come.
        NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False, coalesce_streams=True,
                       iopub_timeout=60, raise_on_iopub_timeout=True,
                       resources={"metadata": {"path": cwd}}).execute(env=kernel_env(args.data))
    with atomic_write(NOTEBOOK, "w") as f:
        f.write(jupytext.writes(nb, fmt="ipynb"))
    print(f"wrote {NOTEBOOK.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
