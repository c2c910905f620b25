"""Whole runs: ``numpy-mnist train`` itself, run through its command line on NumPy and then on CuPy.

Each run's training time is the sum of its history's per-epoch seconds (training and validation,
as the table prints them); start-up, data loading and kernel compilation are not part of it, and
are reported beside it as wall time.  On CuPy the run trains through the fused CUDA graph (its
default), so these compare the two backends as a user meets them.  They run only where CuPy has a GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from numpy_mnist.backends import get_backend
from numpy_mnist.bench.machine import NO_GPU
from numpy_mnist.errors import USER_ERRORS, BackendUnavailableError, NumpyMnistError

__all__ = ["WHOLE_RUNS", "WholeRun", "run_whole", "run_whole_runs"]


@dataclass(frozen=True)
class WholeRun:
    """A ``numpy-mnist train`` command timed on NumPy and on CuPy; ``goal``: NumPy's time / CuPy's."""

    key: str
    argv: tuple[str, ...]
    goal: float

    @property
    def command(self) -> str:
        return " ".join(("numpy-mnist train", *self.argv)) + ("" if self.argv else " (the book's defaults)")


WHOLE_RUNS = (
    WholeRun("book", (), 15.0),
    WholeRun("digits_mlp", ("--dataset", "mnist", "--model", "simple_net", "--hidden", "100", "--epochs", "20"), 40.0),
)


def run_whole(argv, backend: str) -> dict:
    """Run ``numpy-mnist train argv --backend backend`` (quiet, no plots, into a temporary folder) in a
    process of its own, as a user would.

    Returns its training time (the history's seconds summed), its wall time (interpreter start-up
    included), epochs and final accuracy.  A user error (missing MNIST files, ...) is the command's
    one line, as a :class:`~numpy_mnist.errors.NumpyMnistError`.
    """
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "numpy_mnist", "train", *argv, "--backend", backend, "--quiet",
                               "--no-plot", "--out", out], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode == 2:
            raise NumpyMnistError(done.stderr.strip().splitlines()[-1])
        if done.returncode != 0:
            raise RuntimeError(f"numpy-mnist train {' '.join(argv)} --backend {backend} exited with "
                               f"{done.returncode}: {done.stderr.strip()[-2000:]}")
        history = json.loads((Path(out) / "history.json").read_text())["epochs"]
    return {"backend": backend, "training_s": sum(r["seconds"] for r in history), "wall_s": wall,
            "epochs": len(history), "accuracy": history[-1]["accuracy"]}


def run_whole_runs(runs=WHOLE_RUNS, *, log=print) -> list[dict]:
    """Every whole run on NumPy, then on CuPy (skipped, with the reason, where CuPy has no GPU)."""
    why_not = None
    try:
        get_backend("cupy")
    except BackendUnavailableError as exc:
        why_not = f"{NO_GPU} ({exc})" if "not installed" not in str(exc) else NO_GPU
    out = []
    for run in runs:
        entry = {"key": run.key, "command": run.command, "goal": run.goal, "runs": {}, "note": why_not or ""}
        try:
            for backend in () if why_not else ("numpy", "cupy"):
                log(f"whole run: {run.command} --backend {backend}")
                entry["runs"][backend] = run_whole(run.argv, backend)
        except USER_ERRORS as exc:  # the CLI's own one-line errors, backend errors among them
            entry["note"] = str(exc)
        if len(entry["runs"]) == 2:
            entry["speedup"] = entry["runs"]["numpy"]["training_s"] / entry["runs"]["cupy"]["training_s"]
        out.append(entry)
    return out
