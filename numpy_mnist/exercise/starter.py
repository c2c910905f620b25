"""``exercise new``: the starter file, six backward functions that raise ``NotImplementedError``."""

from __future__ import annotations

import textwrap
from pathlib import Path

from numpy_mnist.errors import InputError
from numpy_mnist.exercise.functions import EXERCISES
from numpy_mnist.files import atomic_write

__all__ = ["STARTER_NAME", "starter_source", "write_starter"]

#: The file ``exercise new DIR`` writes into DIR.
STARTER_NAME = "my_gradients.py"

_HEADER = '''\
"""Derive it yourself: the backward functions of chapter 4, written by you.

Fill in each function below (in this order, the book's), then check your work:

    numpy-mnist exercise check {name}            # one row per function, with hints
    numpy-mnist exercise check {name} --train    # train simple_net with your gradients

A function that still raises NotImplementedError counts as "to do".  Use NumPy; you may call the
forward functions (numpy_mnist.layers.sigmoid, softmax, ...), but the point is to write every
derivative yourself, so leave the reference *_backward functions alone.
"""

import numpy as np
'''


def starter_source() -> str:
    """The text of the starter file."""
    parts = [_HEADER.format(name=STARTER_NAME)]
    for exercise in EXERCISES:
        doc = textwrap.indent(f'"""{exercise.doc}"""', "    ")
        parts.append(f"\n\ndef {exercise.name}({exercise.signature}):\n{doc}\n"
                     f"    raise NotImplementedError(\"{exercise.name}: not written yet\")\n")
    return "".join(parts)


def write_starter(folder: str | Path, *, force: bool = False) -> Path:
    """Write ``folder/my_gradients.py``; refuse to overwrite an existing file unless ``force``."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file, not a folder: give the folder to write {STARTER_NAME} into")
    path = folder / STARTER_NAME
    if path.exists() and not force:
        raise InputError(f"{path} already exists and holds your work: check it with `numpy-mnist exercise "
                         f"check {path}`, or pass --force to start over")
    with atomic_write(path, "w") as f:
        f.write(starter_source())
    return path
