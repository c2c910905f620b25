"""What the benchmark ran on: CPU model and cores, GPU (or "no GPU found"), library versions, threads."""

from __future__ import annotations

import ctypes
import os
import platform
import sys
import time

import numpy as np

__all__ = ["machine_info", "numpy_blas_threads", "torch_or_reason", "NO_GPU", "CpuActivity"]

NO_GPU = "no GPU found"


def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13", ...) from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> dict:
    """Logical CPUs in the machine and those this process may run on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"logical": os.cpu_count(), "usable": usable}


def numpy_blas_threads() -> dict:
    """The threads NumPy's BLAS uses for a matrix product: ``{"threads": n, "how": ...}``.

    NumPy's elementwise operations always run on one thread; its matrix products run in the BLAS,
    which may use several.  Asked, in order, of threadpoolctl (if installed), of the loaded
    OpenBLAS or MKL library itself, and last of the environment variables the BLAS reads.
    """
    try:
        import threadpoolctl

        for info in threadpoolctl.threadpool_info():
            if info.get("user_api") == "blas":
                return {"threads": int(info["num_threads"]), "how": f"threadpoolctl ({info.get('internal_api')})"}
    except Exception:  # not installed, or it could not inspect this BLAS
        pass
    for path in _loaded_libraries(("openblas", "mkl_rt", "libmkl")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                       "openblas_get_num_threads64_", "openblas_get_num_threads", "MKL_Get_Max_Threads"):
            func = getattr(lib, symbol, None)
            if func is not None:
                func.restype = ctypes.c_int
                return {"threads": int(func()), "how": f"{os.path.basename(path)}:{symbol}"}
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return {"threads": int(value), "how": f"environment {var}"}
    return {"threads": cpu_cores()["usable"], "how": "assumed: one per usable CPU (the BLAS default)"}


def _loaded_libraries(names) -> list[str]:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if any(n in os.path.basename(p).lower() for n in names))


def torch_or_reason():
    """``(torch, None)`` when PyTorch imports, else ``(None, "torch not installed")``."""
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    return torch, None


def gpu_info() -> dict:
    """The GPU CuPy (or else PyTorch) sees: ``{"name": ...}``, or ``{"name": "no GPU found", "why": ...}``."""
    reasons = []
    try:
        from backends.cupy_backend import import_cupy

        cupy = import_cupy()
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return {"name": name, "memory_GiB": round(props["totalGlobalMem"] / 2**30, 1),
                "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                "cuda_driver": cupy.cuda.runtime.driverGetVersion(), "seen_by": "cupy"}
    except Exception as exc:  # BackendUnavailableError, or a driver error while asking
        reasons.append(f"cupy: {exc}")
    torch, why = torch_or_reason()
    if torch is None:
        reasons.append(f"torch: {why}")
    elif not torch.cuda.is_available():
        reasons.append("torch: no CUDA device visible" if torch.version.cuda else "torch: built without CUDA")
    else:
        props = torch.cuda.get_device_properties(0)
        return {"name": props.name, "memory_GiB": round(props.total_memory / 2**30, 1),
                "cuda_runtime": torch.version.cuda, "seen_by": "torch"}
    return {"name": NO_GPU, "why": reasons}


def library_versions() -> dict:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        versions["numpy_blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:
        versions["numpy_blas"] = "unknown"
    torch, why = torch_or_reason()
    versions["torch"] = torch.__version__ if torch is not None else why
    try:
        import cupy

        versions["cupy"] = cupy.__version__
    except ImportError:
        versions["cupy"] = "cupy not installed"
    from numpy_mnist import __version__

    versions["numpy_mnist"] = __version__
    return versions


def machine_info() -> dict:
    """Everything a reader needs to place the figures: CPU, cores, GPU, versions, threads."""
    torch, _ = torch_or_reason()
    return {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
        "platform": platform.platform(),
        "gpu": gpu_info(),
        "versions": library_versions(),
        "numpy_blas_threads": numpy_blas_threads(),
        "numpy_elementwise_threads": 1,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "argv": sys.argv,
    }


class CpuActivity:
    """How busy *other* programs kept the CPUs between :meth:`start` and :meth:`stop` (Linux only).

    The machine's busy CPU time (from ``/proc/stat``) minus this process's own CPU time, divided by
    the wall time: the number of cores other programs used meanwhile.  On a shared machine this is
    what makes timings wander; the report warns when it is not small.
    """

    def __init__(self) -> None:
        self._start = None

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        busy_s = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
        own = os.times()
        return time.monotonic(), busy_s, own.user + own.system + own.children_user + own.children_system

    def start(self) -> "CpuActivity":
        self._start = self._snapshot()
        return self

    def stop(self) -> dict | None:
        end = self._snapshot()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return None
        wall = end[0] - self._start[0]
        others = max(0.0, (end[1] - self._start[1]) - (end[2] - self._start[2])) / wall
        return {"other_programs_cores": round(others, 3), "wall_s": round(wall, 1),
                "note": "CPU cores other programs kept busy during the run, on average"}
