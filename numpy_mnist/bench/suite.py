"""The benchmark run: references, one epoch at the book's sizes on every engine, sweep, whole runs, targets."""

from __future__ import annotations

import datetime
import gc
import time
from dataclasses import dataclass, replace

from numpy_mnist.bench.data import BenchData, grow_rows, training_data
from numpy_mnist.bench.engines import ENGINE_KEYS, Workload, make_engines
from numpy_mnist.bench.machine import CpuActivity, load_average, machine_info, numpy_blas_threads
from numpy_mnist.bench.references import blas_floor, cpu_references, gpu_references, hardware_bound_s
from numpy_mnist.bench.sweep import FULL_SWEEP, QUICK_SWEEP, run_sweep
from numpy_mnist.bench.targets import evaluate_targets
from numpy_mnist.bench.timing import time_interleaved
from numpy_mnist.bench.whole_runs import run_whole_runs

__all__ = ["BenchConfig", "run_bench", "BOOK_WORKLOADS"]

#: The book's two models at its batch size.
BOOK_WORKLOADS = (Workload("linear1"), Workload("simple_net", hidden=30))


@dataclass
class BenchConfig:
    """How much to measure.  ``quick`` is the under-a-minute version; ``None`` takes its default.

    ``sweep`` adds the sweep; ``whole_runs`` the whole ``numpy-mnist train`` runs (on a GPU only);
    ``rows`` trains on the first rows only and ``data`` replaces the training set (tests); ``blocks``
    and ``settle_s``: the turns each library takes, and the pause between (see :mod:`.timing`).
    """

    quick: bool = False
    engines: tuple[str, ...] = ENGINE_KEYS
    sweep: bool = False
    warmups: int | None = None
    repeats: int | None = None
    series: tuple | None = None
    point_budget_s: float | None = None
    rows: int | None = None
    matmul_n_cpu: int | None = None
    matmul_n_gpu: int | None = None
    data: BenchData | None = None
    whole_runs: bool = True
    blocks: int = 3
    settle_s: float = 0.5

    def resolved(self) -> "BenchConfig":
        quick = self.quick

        def pick(value, default):
            return default if value is None else value

        return replace(self, engines=tuple(self.engines), warmups=pick(self.warmups, 2),
                       repeats=pick(self.repeats, 9 if quick else 21),
                       series=pick(self.series, QUICK_SWEEP if quick else FULL_SWEEP),
                       point_budget_s=pick(self.point_budget_s, 1.0 if quick else 3.0),
                       matmul_n_cpu=pick(self.matmul_n_cpu, 1024 if quick else 2048),
                       matmul_n_gpu=pick(self.matmul_n_gpu, 4096 if quick else 8192))


def run_bench(config: BenchConfig | None = None, log=print) -> dict:
    """Run the benchmark; return every figure as a JSON-ready dict (see :mod:`numpy_mnist.bench.report`)."""
    cfg = (config or BenchConfig()).resolved()
    started, load_start, activity = time.perf_counter(), load_average(), CpuActivity().start()
    blas = numpy_blas_threads()
    engines = make_engines(cfg.engines, torch_threads=blas["threads"])
    unavailable = {e.key: why for e in engines if (why := e.unavailable()) is not None}
    available = [e for e in engines if e.key not in unavailable]
    data = cfg.data or training_data()
    if cfg.rows is not None and cfg.rows < data.rows:
        data = grow_rows(data, cfg.rows)
    log(f"data: {data.source}, {data.rows:,} x {data.x.shape[1]} {data.x.dtype}")
    for key, why in unavailable.items():
        log(f"engine {key} unavailable: {why}")

    log("references: streaming pass and matrix-product rate")
    refs = {"cpu": cpu_references(data.x, warmups=cfg.warmups, repeats=cfg.repeats, matmul_n=cfg.matmul_n_cpu)}
    gpu_ref = gpu_references(data.x, available, warmups=cfg.warmups, repeats=cfg.repeats, matmul_n=cfg.matmul_n_gpu)
    if gpu_ref is not None:
        refs["gpu"] = gpu_ref
    epochs = book_epochs(available, data, refs, cfg, log)  # before machine_info: PyTorch's threads are set now
    results = {
        "schema": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": cfg.quick,
        "machine": {**machine_info(), "numpy_blas_threads": blas},
        "timing": {"warmups": cfg.warmups, "repeats": cfg.repeats, "statistic": "median",
                   "blocks": cfg.blocks, "settle_s": cfg.settle_s,
                   "method": f"each library's trials interleaved round by round, the libraries taking "
                             f"{cfg.blocks} turns with a {cfg.settle_s:g} s pause between; device "
                             "synchronized before every clock read; CUDA events on the GPU"},
        "data": {**data.describe(), "batch_size": 256, "shuffle": False},
        "engines": [e.describe() for e in engines],
        "unavailable": unavailable,
        "references": refs,
        "epochs": epochs,
    }
    if cfg.sweep:
        log(f"sweep: {len(cfg.series)} series")
        results["sweep"] = run_sweep(available, data, cfg.series, warmups=1, max_repeats=min(cfg.repeats, 9),
                                     point_budget_s=cfg.point_budget_s, settle_s=cfg.settle_s, log=log)
    if cfg.whole_runs:
        results["whole_runs"] = run_whole_runs(log=log)
    results["targets"] = evaluate_targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    results["machine"]["load_average"] = {"start": load_start, "end": load_average(),
                                          "note": "1, 5 and 15 minute load averages: other work on the machine"}
    results["machine"]["other_programs"] = activity.stop()
    return results


def book_epochs(engines, data: BenchData, refs: dict, cfg: BenchConfig, log=print) -> list[dict]:
    """One epoch of each book workload on each engine, and the BLAS floor, all timed interleaved: the table's rows."""
    log(f"one epoch at the book's sizes: {len(BOOK_WORKLOADS)} models x {len(engines)} engines, "
        f"{cfg.warmups} warm-ups + {cfg.repeats} interleaved repeats")
    trials = {}
    for w in BOOK_WORKLOADS:
        trials.update({(w.name, e.key): e.prepare(w, data.x, data.y) for e in engines})
        trials[(w.name, "blas-floor")] = blas_floor(w, data.x)
    framework = {e.key: e.framework for e in engines}
    timed = time_interleaved(trials, warmups=cfg.warmups, repeats=cfg.repeats, blocks=cfg.blocks,
                             settle_s=cfg.settle_s, group_of=lambda key: framework.get(key[1], "numpy-mnist"))
    del trials
    for e in engines:
        e.release()
    gc.collect()
    rows = []
    for w in BOOK_WORKLOADS:
        torch_cpu = timed.get((w.name, "torch-cpu"))
        for e in engines:
            m, ref = timed[(w.name, e.key)], refs["gpu" if e.is_gpu else "cpu"]
            rows.append({"model": w.name, "workload": w.as_dict(), "engine": e.key, "label": e.label,
                         "device": "gpu" if e.is_gpu else "cpu", **m.as_dict(),
                         "x_stream": m.median_s / ref["stream"]["seconds"],
                         "x_hardware_bound": m.median_s / hardware_bound_s(w, data.rows, data.x.nbytes, ref),
                         "speedup_vs_torch_cpu": torch_cpu.median_s / m.median_s if torch_cpu else None})
            if e.key == "numpy":
                rows[-1]["blas_floor"] = timed[(w.name, "blas-floor")].as_dict()
        log(f"  {w.name}: " + ", ".join(f"{e.key} {timed[(w.name, e.key)].median_s * 1e3:.2f} ms" for e in engines))
    return rows
