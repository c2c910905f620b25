"""Physical references, measured in the same run as the epochs: what the hardware allows.

* **Streaming pass**: the time to read the whole training set once (12,396 x 784 float32, 39 MB)
  on the device, by the fastest of a few ways of reading it; its bytes over that time is the
  bandwidth the epochs can hope for.  One epoch of ``linear1`` must read every image at least once,
  so the streaming pass is a floor for it.
* **Matrix-product rate**: FLOP/s of a large square float32 matrix product on the device, the
  ceiling for the epochs' products.
* **BLAS floor** (CPU, a diagnostic): the epoch's own matrix products alone, with the epoch's
  shapes, batch by batch, and nothing else: what is left of an epoch once Python and the elementwise
  work are gone.

Together they give each epoch a hardware bound, ``max(flops / rate, bytes / bandwidth)``.
"""

from __future__ import annotations

import numpy as np

from numpy_mnist.bench.timing import Trial, time_interleaved

__all__ = ["cpu_references", "gpu_references", "blas_floor", "hardware_bound_s"]


def _summary(measurements: dict, nbytes: int) -> dict:
    methods = {name: m.as_dict() for name, m in measurements.items()}
    best = min(methods, key=lambda name: methods[name]["median_s"])
    seconds = methods[best]["median_s"]
    return {"seconds": seconds, "bytes": nbytes, "GB_per_s": nbytes / seconds / 1e9, "best_method": best,
            "methods": methods}


def _matmul_summary(n: int, mm) -> dict:
    """The record of an ``n x n`` float32 matrix product: its timing and ``2 n^3`` FLOPs per median second."""
    return {"n": n, "dtype": "float32", **mm.as_dict(), "flop_per_s": 2.0 * n**3 / mm.median_s}


def cpu_references(x: np.ndarray, *, warmups: int = 2, repeats: int = 9, matmul_n: int = 2048) -> dict:
    """The streaming pass over ``x`` and the float32 matrix-product rate, on the CPU with NumPy."""
    ones = np.ones((x.shape[1], 1), dtype=x.dtype)
    trials = {
        "x @ ones (BLAS matrix-vector product, all BLAS threads)": Trial(lambda: x @ ones),
        "sum over rows (NumPy reduction, one thread)": Trial(lambda: np.add.reduce(x, axis=0)),
    }
    stream = _summary(time_interleaved(trials, warmups=warmups, repeats=repeats), int(x.nbytes))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)
    b = rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)
    mm = time_interleaved({"a @ b": Trial(lambda: a @ b)}, warmups=1, repeats=max(3, repeats // 2))["a @ b"]
    return {"device": "cpu", "stream": stream,
            "matmul": _matmul_summary(matmul_n, mm)}


def gpu_references(x: np.ndarray, engines, *, warmups: int = 2, repeats: int = 9, matmul_n: int = 8192) -> dict | None:
    """As :func:`cpu_references`, on the GPU through CuPy (or PyTorch when CuPy is not there)."""
    for engine in engines:
        if engine.is_gpu and engine.unavailable() is None:
            if engine.framework == "numpy-mnist":
                return _gpu_references_cupy(engine.backend.cupy, x, warmups, repeats, matmul_n)
            return _gpu_references_torch(x, warmups, repeats, matmul_n)
    return None


def _gpu_references_cupy(cupy, x, warmups, repeats, matmul_n) -> dict:
    from numpy_mnist.bench.engines import EventTrial

    trial = EventTrial.with_cupy_events

    def measure():  # the device arrays live in this call only, so the pool can free them after it
        xd = cupy.asarray(x)
        ones = cupy.ones((x.shape[1], 1), dtype=xd.dtype)
        stream = _summary(time_interleaved({"x @ ones (cuBLAS)": trial(lambda: xd @ ones),
                                            "sum over rows (CuPy reduction)": trial(lambda: xd.sum(axis=0))},
                                           warmups=warmups, repeats=repeats), int(xd.nbytes))
        a = cupy.random.default_rng(0).standard_normal((matmul_n, matmul_n), dtype=cupy.float32)
        b = cupy.random.default_rng(1).standard_normal((matmul_n, matmul_n), dtype=cupy.float32)
        return stream, time_interleaved({"a @ b": trial(lambda: a @ b)}, warmups=2, repeats=repeats)["a @ b"]

    stream, mm = measure()
    cupy.get_default_memory_pool().free_all_blocks()
    return {"device": "gpu", "via": "cupy", "stream": stream,
            "matmul": _matmul_summary(matmul_n, mm)}


def _gpu_references_torch(x, warmups, repeats, matmul_n) -> dict:
    import torch

    from numpy_mnist.bench.engines import EventTrial

    trial = EventTrial.with_torch_events

    def measure():  # the device tensors live in this call only, so the cache can free them after it
        xd = torch.from_numpy(x).cuda()
        ones = torch.ones((x.shape[1], 1), device="cuda")
        stream = _summary(time_interleaved({"x @ ones (cuBLAS)": trial(lambda: xd @ ones),
                                            "sum over rows (torch reduction)": trial(lambda: xd.sum(dim=0))},
                                           warmups=warmups, repeats=repeats), int(x.nbytes))
        gen = torch.Generator(device="cuda").manual_seed(0)
        a = torch.randn((matmul_n, matmul_n), device="cuda", generator=gen)
        b = torch.randn((matmul_n, matmul_n), device="cuda", generator=gen)
        return stream, time_interleaved({"a @ b": trial(lambda: a @ b)}, warmups=2, repeats=repeats)["a @ b"]

    stream, mm = measure()
    torch.cuda.empty_cache()
    return {"device": "gpu", "via": "torch", "stream": stream,
            "matmul": _matmul_summary(matmul_n, mm)}


def blas_floor(workload, x: np.ndarray) -> Trial:
    """A trial running only the matrix products of one epoch of ``workload`` (NumPy, batch by batch).

    Same calls, shapes and memory layout as the model code (``x @ w``, ``x.T @ dz``, ...), fixed
    parameters and upstream gradients: the part of an epoch no Python or elementwise tuning can cut.
    """
    rng = np.random.default_rng(0)
    bs = workload.batch_size
    batches = [x[start:start + bs] for start in range(0, x.shape[0], bs)]
    if workload.model == "linear1":
        w = rng.standard_normal((x.shape[1], 1), dtype=np.float32)
        dz = [rng.standard_normal((len(b), 1), dtype=np.float32) for b in batches]

        def run():
            for xb, g in zip(batches, dz):
                xb @ w
                xb.T @ g
        return Trial(run)
    h = workload.hidden
    w1 = rng.standard_normal((x.shape[1], h), dtype=np.float32)
    w2 = rng.standard_normal((h, 1), dtype=np.float32)
    acts = [rng.standard_normal((len(b), h), dtype=np.float32) for b in batches]
    dz = [rng.standard_normal((len(b), 1), dtype=np.float32) for b in batches]

    def run():
        for xb, a, g in zip(batches, acts, dz):
            xb @ w1
            a @ w2
            a.T @ g
            g @ w2.T
            xb.T @ a
    return Trial(run)


def hardware_bound_s(workload, rows: int, nbytes: int, reference: dict) -> float:
    """``max(flops / matrix-product rate, bytes / streaming bandwidth)`` for one epoch: a lower bound."""
    flops = workload.flops(rows)
    return max(flops / reference["matmul"]["flop_per_s"], nbytes / (reference["stream"]["GB_per_s"] * 1e9))
