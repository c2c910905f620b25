"""What the benchmark ran on: CPU and cores, GPU (or "no GPU found"), library versions, threads, load.

Threads and the BLAS come from threadpoolctl, which asks the loaded libraries themselves; versions
from each library's own ``__version__`` and the CUDA runtime's version calls.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info

from numpy_mnist import __version__
from numpy_mnist.backends import BackendUnavailableError
from numpy_mnist.backends.cupy_backend import import_cupy

__all__ = ["machine_info", "numpy_blas_threads", "torch_or_reason", "NO_GPU", "cpu_snapshot", "other_programs",
           "wait_for_quiet"]

NO_GPU = "no GPU found"


def torch_or_reason(cuda: bool = False):
    """``(torch, None)`` when PyTorch imports (and, with ``cuda``, sees a CUDA device), else ``(None, why not)``."""
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    if cuda and not torch.cuda.is_available():
        return None, "torch sees no CUDA device" if torch.version.cuda else "torch was built without CUDA"
    return torch, None


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13", ...) from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.lower().startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def _numpy_blas() -> dict | None:
    """threadpoolctl's record of the BLAS NumPy loaded (``None`` without a BLAS)."""
    found = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    return next((info for info in found if "numpy" in info.get("filepath", "")), found[0] if found else None)


def numpy_blas_threads() -> dict:
    """The threads NumPy's BLAS uses for a matrix product: ``{"threads": n, "how": ...}``.

    NumPy's elementwise operations always run on one thread; its matrix products run in the BLAS,
    which may use several.
    """
    blas = _numpy_blas()
    if blas is None:
        return {"threads": os.cpu_count(), "how": "assumed one per CPU: threadpoolctl found no BLAS"}
    return {"threads": int(blas["num_threads"]), "how": f"threadpoolctl ({blas['internal_api']})"}


def gpu_info() -> dict:
    """The GPU CuPy (or else PyTorch) sees: ``{"name": ...}``, or ``{"name": "no GPU found", "why": ...}``."""
    try:
        runtime = import_cupy().cuda.runtime
        props = runtime.getDeviceProperties(runtime.getDevice())
        name = props["name"]
        return {"name": name.decode() if isinstance(name, bytes) else str(name),
                "memory_GiB": round(props["totalGlobalMem"] / 2**30, 1), "cuda_runtime": runtime.runtimeGetVersion(),
                "cuda_driver": runtime.driverGetVersion(), "seen_by": "cupy"}
    except (BackendUnavailableError, RuntimeError) as exc:  # CUDA runtime errors are RuntimeErrors
        reasons = [f"cupy: {exc}"]
    torch, why = torch_or_reason(cuda=True)
    if torch is not None:
        props = torch.cuda.get_device_properties(0)
        return {"name": props.name, "memory_GiB": round(props.total_memory / 2**30, 1),
                "cuda_runtime": torch.version.cuda, "seen_by": "torch"}
    return {"name": NO_GPU, "why": [*reasons, f"torch: {why}"]}


def machine_info() -> dict:
    """Everything a reader needs to place the figures: CPU, cores, GPU, library versions, threads."""
    blas, (torch, why) = _numpy_blas(), torch_or_reason()
    try:
        import cupy

        cupy_version = cupy.__version__
    except ImportError:
        cupy_version = "cupy not installed"
    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "numpy_blas": f"{blas['internal_api']} {blas['version']}" if blas else "unknown",
                "torch": torch.__version__ if torch is not None else why,
                "cupy": cupy_version, "numpy_mnist": __version__}
    return {"cpu": cpu_model(), "cores": {"logical": os.cpu_count(), "usable": len(os.sched_getaffinity(0))
                                                           if hasattr(os, "sched_getaffinity") else os.cpu_count()},
            "platform": platform.platform(), "gpu": gpu_info(), "versions": versions,
            "numpy_blas_threads": numpy_blas_threads(), "numpy_elementwise_threads": 1,
            "torch_threads": torch.get_num_threads() if torch is not None else None, "argv": sys.argv}


def other_programs(start: tuple | None) -> dict | None:
    """How busy *other* programs kept the CPUs since ``start``, a :func:`cpu_snapshot` (Linux only).

    The machine's busy CPU time (from ``/proc/stat``) minus this process's own CPU time, divided by
    the wall time: the number of cores other programs used meanwhile.  On a shared machine this is
    what makes timings wander; the report warns when it is not small.  Beside it, the 1, 5 and 15
    minute load averages at the start and the end.
    """
    end = cpu_snapshot()
    if start is None or end is None or end[0] <= start[0]:
        return None
    wall = end[0] - start[0]
    others = max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / wall
    return {"other_programs_cores": round(others, 3), "wall_s": round(wall, 1),
            "load_average": {"start": start[3], "end": end[3]},
            "note": "CPU cores other programs kept busy during the run, on average; 1, 5 and 15 minute load averages"}


def cpu_snapshot() -> tuple[float, float, float, list[float]] | None:
    """(wall clock, the machine's busy CPU seconds, this process's CPU seconds, the load averages), or ``None``
    off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    own = os.times()
    return (time.monotonic(), (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"),
            own.user + own.system + own.children_user + own.children_system, [round(v, 2) for v in os.getloadavg()])


def wait_for_quiet(max_cores: float, limit_s: float = 1800, log=print) -> None:
    """Sleep until other programs use at most ``max_cores`` CPU cores over a 5 s window (or ``limit_s`` passes)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        start = cpu_snapshot()
        time.sleep(5)
        busy = (other_programs(start) or {}).get("other_programs_cores", 0.0)
        if busy <= max_cores:
            return
        log(f"waiting for a quiet machine: other programs use {busy:.2f} cores")
    log("the machine did not become quiet; timing anyway")
