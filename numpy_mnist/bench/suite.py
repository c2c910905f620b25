"""The benchmark run: references, one epoch at the book's sizes on every engine, targets, sweep."""

from __future__ import annotations

import datetime
import gc
import os
import time
from dataclasses import dataclass, field

from numpy_mnist.bench.data import BenchData, grow_rows, training_data
from numpy_mnist.bench.engines import DEFAULT_ENGINES, Workload, make_engines
from numpy_mnist.bench.fused_targets import evaluate_fused_targets, run_whole_runs
from numpy_mnist.bench.machine import NO_GPU, CpuActivity, machine_info, numpy_blas_threads
from numpy_mnist.bench.references import blas_floor, cpu_references, gpu_references, hardware_bound_s
from numpy_mnist.bench.sweep import FULL_SWEEP, QUICK_SWEEP, run_sweep
from numpy_mnist.bench.timing import time_interleaved

__all__ = ["BenchConfig", "run_bench", "BOOK_WORKLOADS", "TARGETS"]

#: The book's two models at its batch size.
BOOK_WORKLOADS = (Workload("linear1"), Workload("simple_net", hidden=30))

#: Issue 5's speed targets: (key, what, goal text, check on the measured figure).
TARGETS = (
    ("cpu_linear1_vs_torch", "CPU: linear1 epoch, PyTorch eager time / numpy-mnist time", ">= 4x", lambda v: v >= 4),
    ("cpu_simple_net_vs_torch", "CPU: simple_net epoch, PyTorch eager time / numpy-mnist time", ">= 2x",
     lambda v: v >= 2),
    ("cpu_linear1_vs_stream", "CPU: linear1 epoch / one streaming pass over the training data", "<= 2x",
     lambda v: v <= 2),
    ("gpu_linear1_vs_torch", "GPU: linear1 epoch, PyTorch CUDA eager time / numpy-mnist CuPy time", ">= 3x",
     lambda v: v >= 3),
    ("gpu_simple_net_vs_torch", "GPU: simple_net epoch, PyTorch CUDA eager time / numpy-mnist CuPy time", ">= 3x",
     lambda v: v >= 3),
)


@dataclass
class BenchConfig:
    """How much to measure.  ``quick`` is the under-a-minute version; ``sweep`` adds the sweep."""

    quick: bool = False
    engines: tuple[str, ...] = DEFAULT_ENGINES
    sweep: bool = False
    warmups: int | None = None
    repeats: int | None = None
    series: tuple = field(default=None)
    point_budget_s: float | None = None
    rows: int | None = None  # train on the first ``rows`` rows only (tests)
    matmul_n_cpu: int | None = None
    matmul_n_gpu: int | None = None
    data: BenchData | None = None
    whole_runs: bool = True  # issue 11's whole `numpy-mnist train` runs, NumPy against CuPy (GPU only)
    blocks: int | None = None  # turns each library takes (see timing.time_interleaved)
    settle_s: float = 0.5  # pause when switching between libraries

    def resolved(self) -> "BenchConfig":
        quick = self.quick
        return BenchConfig(
            quick=quick, engines=tuple(self.engines), sweep=self.sweep,
            warmups=self.warmups if self.warmups is not None else 2,
            repeats=self.repeats if self.repeats is not None else (9 if quick else 21),
            series=self.series if self.series is not None else (QUICK_SWEEP if quick else FULL_SWEEP),
            point_budget_s=self.point_budget_s if self.point_budget_s is not None else (1.0 if quick else 3.0),
            rows=self.rows,
            matmul_n_cpu=self.matmul_n_cpu or (1024 if quick else 2048),
            matmul_n_gpu=self.matmul_n_gpu or (4096 if quick else 8192),
            data=self.data, whole_runs=self.whole_runs, blocks=self.blocks if self.blocks is not None else 3,
            settle_s=self.settle_s)


def run_bench(config: BenchConfig | None = None, log=print) -> dict:
    """Run the benchmark; return every figure as a JSON-ready dict (see :mod:`numpy_mnist.bench.report`)."""
    cfg = (config or BenchConfig()).resolved()
    started = time.perf_counter()
    load_start = _load_average()
    activity = CpuActivity().start()
    blas = numpy_blas_threads()
    engines = make_engines(cfg.engines, torch_threads=blas["threads"])
    unavailable = {e.key: e.unavailable() for e in engines if e.unavailable() is not None}
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

    log(f"one epoch at the book's sizes: {len(BOOK_WORKLOADS)} models x {len(available)} engines, "
        f"{cfg.warmups} warm-ups + {cfg.repeats} interleaved repeats")
    trials = {}
    for w in BOOK_WORKLOADS:
        for e in available:
            trials[(w.name, e.key)] = e.prepare(w, data.x, data.y)
        trials[(w.name, "blas-floor")] = blas_floor(w, data.x)
    framework = {e.key: e.framework for e in available}
    timed = time_interleaved(trials, warmups=cfg.warmups, repeats=cfg.repeats, blocks=cfg.blocks,
                             settle_s=cfg.settle_s, group_of=lambda key: framework.get(key[1], "numpy-mnist"))
    del trials
    for e in available:
        e.release()
    gc.collect()

    epochs = []
    for w in BOOK_WORKLOADS:
        floor = timed[(w.name, "blas-floor")]
        torch_cpu = timed.get((w.name, "torch-cpu"))
        for e in available:
            m = timed[(w.name, e.key)]
            ref = refs["gpu" if e.is_gpu else "cpu"]
            row = {"model": w.name, "workload": w.as_dict(), "engine": e.key, "label": e.label,
                   "device": "gpu" if e.is_gpu else "cpu", **m.as_dict(),
                   "x_stream": m.median_s / ref["stream"]["seconds"],
                   "x_hardware_bound": m.median_s / hardware_bound_s(w, data.rows, data.x.nbytes, ref),
                   "speedup_vs_torch_cpu": torch_cpu.median_s / m.median_s if torch_cpu else None}
            if e.key == "numpy":
                row["blas_floor"] = floor.as_dict()
            epochs.append(row)
        log("  " + w.name + ": " + ", ".join(f"{e.key} {timed[(w.name, e.key)].median_s * 1e3:.2f} ms"
                                             for e in available))

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
    results["targets"] = evaluate_targets(results) + evaluate_fused_targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    results["machine"]["load_average"] = {"start": load_start, "end": _load_average(),
                                          "note": "1, 5 and 15 minute load averages: other work on the machine"}
    results["machine"]["other_programs"] = activity.stop()
    return results


def _load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _epoch(results, model, engine):
    for row in results["epochs"]:
        if row["model"] == model and row["engine"] == engine:
            return row["median_s"]
    return None


def evaluate_targets(results: dict) -> list[dict]:
    """Issue 5's targets against this run's figures: measured value and whether it is met (or why not known)."""
    ref = results["references"]["cpu"]["stream"]["seconds"]
    measured = {}

    def ratio(model, slow, fast):
        a, b = _epoch(results, model, slow), _epoch(results, model, fast)
        return (a / b if a and b else None), (slow, fast)

    # Each target: (value or None, the engines it is measured from).
    measured["cpu_linear1_vs_torch"] = ratio("linear1", "torch-cpu", "numpy")
    measured["cpu_simple_net_vs_torch"] = ratio("simple_net(30)", "torch-cpu", "numpy")
    lin = _epoch(results, "linear1", "numpy")
    measured["cpu_linear1_vs_stream"] = (lin / ref if lin else None), ("numpy",)
    measured["gpu_linear1_vs_torch"] = ratio("linear1", "torch-cuda", "cupy")
    measured["gpu_simple_net_vs_torch"] = ratio("simple_net(30)", "torch-cuda", "cupy")
    gpu_missing = results["machine"]["gpu"]["name"] == NO_GPU
    ran = {row["engine"] for row in results["epochs"]}
    out = []
    for key, what, goal, check in TARGETS:
        value, engines = measured[key]
        if value is None:
            missing = [e for e in engines if e not in ran]
            why = ("no GPU found" if key.startswith("gpu") and gpu_missing else
                   "an engine it needs did not run: " + ", ".join(
                       f"{e} ({results['unavailable'].get(e, 'not among --engines')})" for e in missing))
            out.append({"key": key, "what": what, "goal": goal, "measured": None, "met": None, "note": why})
        else:
            out.append({"key": key, "what": what, "goal": goal, "measured": value, "met": bool(check(value)),
                        "note": ""})
    sweep = results.get("sweep")
    if sweep is not None:
        if gpu_missing:
            note = "no GPU found: no GPU engine ran, so no crossover could be measured"
        else:
            note = "; ".join(f"{s['name']}: {s['crossover']['statement']}" for s in sweep["series"])
        out.append({"key": "gpu_crossover", "what": "GPU: smallest size where the GPU beats the CPU",
                    "goal": "stated", "measured": None, "met": None if gpu_missing else True, "note": note})
    return out
