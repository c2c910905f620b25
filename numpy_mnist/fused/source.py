"""The ``.cu`` sources of the fused kernels, and the names of the instantiations a model needs.

Nothing here imports CuPy: the test-suite reads the same sources and names to compile them with
``nvcc`` and ``g++`` on machines without a GPU.  Each loss's ``LOSS`` template argument is its
:attr:`~numpy_mnist.losses.Loss.kernel_code`, written beside the loss's definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from numpy_mnist.losses import LOSSES, get_loss

__all__ = [
    "KERNEL_DIR",
    "KERNEL_FILES",
    "MAX_CLASSES",
    "NVRTC_OPTIONS",
    "KernelConfig",
    "cli_configs",
    "geometry",
    "program_source",
]

#: The folder of the ``.cu`` files (package data).
KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
#: The kernel files, in the order they are put together into one program.
KERNEL_FILES = ("linear.cu", "mlp.cu", "reduce.cu")
#: NVRTC's options: C++17 (``if constexpr``), and no multiply-add contracted unless the source says
#: ``fma`` (so every rounding is the one written in the source; see ``common.cuh``).
NVRTC_OPTIONS = ("--std=c++17", "--fmad=false")
#: The most classes the row kernels hold in registers (``T z[K]``); more fall back to the array path.
MAX_CLASSES = 32

_GEOMETRY_LINE = re.compile(r"^constexpr int ([A-Z][A-Z0-9_]*) = (\d+);", re.MULTILINE)
_INCLUDE = re.compile(r'^#include "([\w.]+)"\s*$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^#pragma once\s*$", re.MULTILINE)
_C_TYPES = {"float32": "float", "float64": "double"}


def program_source() -> str:
    """Every kernel file as one self-contained program: each ``#include "x.cuh"`` is replaced by the
    header's text, once (NVRTC then needs no include path, and CuPy's kernel cache, which hashes
    the program text, sees any change to a header)."""
    seen: set[str] = set()

    def header(match) -> str:  # the header's text where it is first included (headers include no headers)
        name = match.group(1)
        text = "" if name in seen else _PRAGMA_ONCE.sub("", (KERNEL_DIR / name).read_text())
        seen.add(name)
        return text

    return "\n".join(_INCLUDE.sub(header, (KERNEL_DIR / name).read_text()) for name in KERNEL_FILES)


def geometry() -> dict[str, int]:
    """The tile sizes the kernels are written for (``constexpr int`` lines of ``common.cuh``, e.g.
    ``{"LINEAR_ROWS": 8, ...}``): the trainer sizes its grids and blocks by them, so the two cannot
    disagree."""
    return {name: int(value) for name, value in _GEOMETRY_LINE.findall((KERNEL_DIR / "common.cuh").read_text())}


@dataclass(frozen=True)
class KernelConfig:
    """Which kernels train a model: its kind, logits per row, loss and dtype."""

    kind: str  # "linear" or "simple_net" (a model's ``kind``)
    outputs: int  # K
    loss: str  # the name of a loss with a ``kernel_code``: "mnist_loss", "bce" or "cross_entropy"
    dtype: str  # "float32" or "float64"

    def __post_init__(self) -> None:
        # The trainer's kind, loss and dtype are vetted by why_not_kernels first; this refuses logits
        # and targets that no kernel pairs (one logit with class labels, K logits with 0/1 targets).
        if self.multiclass == (self.outputs == 1) or not 1 <= self.outputs <= MAX_CLASSES:
            raise ValueError(f"{self.loss} with {self.outputs} outputs has no fused kernels")

    @property
    def multiclass(self) -> bool:
        """Class labels (N,) against K logits, rather than one logit and a 0/1 target per row."""
        return get_loss(self.loss).multiclass

    def names(self) -> dict[str, str]:
        """The instantiations this model trains with, by role (``"rows"``, ``"step"``, ...), as C++
        name expressions: what ``cupy.RawModule(name_expressions=...)`` compiles and ``get_function`` finds.
        ``T`` is the C type of the dtype; the targets' type ``Y`` is ``T`` for 0/1 targets, ``long long``
        for class labels."""
        t, k, loss = _C_TYPES[self.dtype], self.outputs, get_loss(self.loss).kernel_code
        y = "long long" if self.multiclass else t
        names = {"sum_chunks": f"sum_chunks<{t}>", "sum_parts": f"sum_parts<{t}>"}
        if self.kind == "linear":
            names.update(rows=f"linear_rows<{t}, {y}, {k}, {loss}>", step=f"linear_step<{t}, {k}>")
        else:
            names.update(hidden=f"mlp_hidden<{t}>", rows=f"mlp_rows<{t}, {y}, {k}, {loss}>",
                         step=f"mlp_step<{t}, {k}>")
        return names


def cli_configs() -> list[KernelConfig]:
    """Every configuration ``numpy-mnist train`` can ask for: both models with every loss that has
    kernels, on one logit (``mnist_loss``, ``bce``) or over the ten digits (``cross_entropy``), in
    float32 and float64."""
    return [KernelConfig(kind, 10 if loss.multiclass else 1, loss.name, dtype) for dtype in _C_TYPES
            for kind in ("linear", "simple_net") for loss in LOSSES.values() if loss.kernel_code is not None]
