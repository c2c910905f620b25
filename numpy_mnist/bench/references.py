"""Physical references, measured in the same run as the epochs: what the hardware allows.

* **Streaming pass**: the time to read the whole training set once (12,396 x 784 float32, 39 MB)
  on the device, by the fastest of two ways of reading it (a matrix-vector product with a vector of
  ones, a column sum); its bytes over that time is the bandwidth the epochs can hope for.  One epoch
  of ``linear1`` must read every image at least once, so the streaming pass is a floor for it.
* **Matrix-product rate**: FLOP/s (``2 n^3`` per product) of a large square float32 matrix product
  on the device, the ceiling for the epochs' products.
* **BLAS floor** (CPU): the epoch's own matrix products alone, with the epoch's shapes, batch by
  batch, and nothing else: what is left of an epoch once Python and the elementwise work are gone
  (for the ResNet-18, its convolutions' products with the network's own im2col shapes and layout).

Together they give each epoch a hardware bound, ``max(flops / rate, bytes / bandwidth)``.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from numpy_mnist.bench.resnet import conv_operands
from numpy_mnist.bench.timing import Trial, cupy_trial, time_interleaved, torch_cuda_trial

__all__ = ["references", "blas_floor", "floor_products", "hardware_bound_s"]


def _references(x: np.ndarray, put, trial, names: tuple[str, str], *, warmups: int, repeats: int,
                matmul_n: int, matmul_timing: tuple[int, int]) -> dict:
    """The streaming pass over ``x`` and the matrix-product rate, on the device ``put`` copies to.

    ``trial(run)`` times ``run`` on that device's clock; ``names`` name the two ways of streaming;
    ``matmul_timing`` is the product's (warm-ups, repeats).  Device arrays live in this call only.
    """
    xd, ones = put(x), put(np.ones((x.shape[1], 1), dtype=x.dtype))
    methods = time_interleaved({names[0]: trial(lambda: xd @ ones), names[1]: trial(lambda: xd.sum(axis=0))},
                               warmups=warmups, repeats=repeats)
    best = min(methods, key=lambda name: methods[name].median_s)
    seconds = methods[best].median_s
    stream = {"seconds": seconds, "bytes": int(x.nbytes), "GB_per_s": x.nbytes / seconds / 1e9, "best_method": best,
              "methods": {name: m.as_dict() for name, m in methods.items()}}
    rng = np.random.default_rng(0)
    a, b = (put(rng.standard_normal((matmul_n, matmul_n), dtype=np.float32)) for _ in range(2))
    mm = time_interleaved({"a @ b": trial(lambda: a @ b)}, warmups=matmul_timing[0], repeats=matmul_timing[1])["a @ b"]
    return {"stream": stream, "matmul": {"n": matmul_n, "dtype": "float32", **mm.as_dict(),
                                         "flop_per_s": 2.0 * matmul_n**3 / mm.median_s}}


def references(x: np.ndarray, engines, cfg) -> dict:
    """The streaming pass over ``x`` and the float32 matrix-product rate (``cfg.matmul_n_cpu``, ``cfg.matmul_n_gpu``):
    ``{"cpu": ...}`` with NumPy, and ``"gpu"`` on the GPU of the first GPU engine among ``engines`` (all available;
    CuPy's, or PyTorch's) where there is one."""
    names = ("x @ ones (BLAS matrix-vector product, all BLAS threads)", "sum over rows (NumPy reduction, one thread)")
    refs = {"cpu": {"device": "cpu", **_references(x, np.asarray, Trial, names, warmups=cfg.warmups,
                                                    repeats=cfg.repeats, matmul_n=cfg.matmul_n_cpu,
                                                    matmul_timing=(1, max(3, cfg.repeats // 2)))}}
    gpu = next((e for e in engines if e.is_gpu), None)
    if gpu is None:
        return refs
    if gpu.framework == "numpy-mnist":
        import cupy

        via, put, trial = "CuPy", cupy.asarray, cupy_trial
    else:
        import torch

        via, put, trial = "torch", partial(torch.as_tensor, device="cuda"), torch_cuda_trial
    names = ("x @ ones (cuBLAS)", f"sum over rows ({via} reduction)")
    refs["gpu"] = {"device": "gpu", "via": via.lower(), **_references(
        x, put, trial, names, warmups=cfg.warmups, repeats=cfg.repeats, matmul_n=cfg.matmul_n_gpu,
        matmul_timing=(2, cfg.repeats))}
    gpu.release()  # the device memory those arrays held
    return refs


def blas_floor(workload, x: np.ndarray) -> Trial:
    """A trial running only the matrix products of one epoch of ``workload`` (NumPy, batch by batch): the
    :func:`floor_products`."""
    products = floor_products(workload, x)

    def run():
        for left, right in products:
            left @ right

    return Trial(run)


def floor_products(workload, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(left, right)`` operands of every matrix product of one epoch of ``workload``, in order.

    Same calls, shapes and memory layout as the model code (linear1: ``x @ w``, ``x.T @ dz``;
    simple_net: ``x @ w1``, ``a @ w2``, ``a.T @ dz``, ``dz @ w2.T``, ``x.T @ dh``), with fixed
    parameters and upstream gradients: the part of an epoch no Python or elementwise tuning can cut.
    For the ResNet-18, its convolutions' products over the batches its trials time
    (:func:`~numpy_mnist.bench.resnet.conv_operands`).
    """
    normal = partial(np.random.default_rng(0).standard_normal, dtype=np.float32)
    if workload.model == "resnet18":
        products = conv_operands(workload) * workload.timed_batches(x.shape[0])
    else:
        w, w1, w2 = normal((x.shape[1], 1)), normal((x.shape[1], workload.hidden)), normal((workload.hidden, 1))
        products = []
        for start in range(0, x.shape[0], workload.batch_size):
            xb = x[start:start + workload.batch_size]
            dz, a = normal((len(xb), 1)), normal((len(xb), workload.hidden))
            products += ([(xb, w), (xb.T, dz)] if workload.model == "linear1" else
                         [(xb, w1), (a, w2), (a.T, dz), (dz, w2.T), (xb.T, a)])
    return products


def hardware_bound_s(workload, rows: int, nbytes: int, reference: dict) -> float:
    """``max(flops / matrix-product rate, bytes / streaming bandwidth)`` for one epoch: a lower bound."""
    return max(workload.flops(rows) / reference["matmul"]["flop_per_s"],
               nbytes / (reference["stream"]["GB_per_s"] * 1e9))
