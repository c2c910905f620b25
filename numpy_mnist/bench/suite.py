"""The benchmark run: references, one epoch at the book's sizes and of the ResNet-18 on every engine, sweep,
whole runs, targets."""

from __future__ import annotations

import datetime
import resource
import time
import tracemalloc
from dataclasses import dataclass, replace

from numpy_mnist.bench.data import BenchData, training_data
from numpy_mnist.bench.engines import ENGINE_KEYS, WARM_BATCHES, Workload, make_engines
from numpy_mnist.bench.machine import cpu_snapshot, machine_info, numpy_blas_threads, other_programs
from numpy_mnist.bench.references import blas_floor, hardware_bound_s, references
from numpy_mnist.bench.sweep import FULL_SWEEP, QUICK_SWEEP, run_sweep, time_trials
from numpy_mnist.bench.targets import evaluate_targets
from numpy_mnist.bench.whole_runs import run_whole_runs

__all__ = ["BenchConfig", "run_bench", "BOOK_WORKLOADS"]

#: The book's two models at its batch size.
BOOK_WORKLOADS = (Workload("linear1"), Workload("simple_net", hidden=30))
#: What ``None`` stands for in a :class:`BenchConfig`, in a full run and in a quick one.
DEFAULTS = {False: {"warmups": 2, "repeats": 21, "series": FULL_SWEEP, "point_budget_s": 3.0, "matmul_n_cpu": 2048,
                    "matmul_n_gpu": 8192},
            True: {"warmups": 2, "repeats": 9, "series": QUICK_SWEEP, "point_budget_s": 1.0, "matmul_n_cpu": 1024,
                   "matmul_n_gpu": 4096, "resnet_batches": 12}}
#: The most repeats of a ResNet-18 epoch (a minute each on a 2-core CPU).
RESNET_REPEATS = 3


@dataclass
class BenchConfig:
    """How much to measure.  ``quick`` is the version of a minute or two; ``None`` takes its default.

    ``sweep`` adds the sweep; ``whole_runs`` the whole ``numpy-mnist train`` runs (on a GPU only);
    ``resnet`` the ResNet-18 rows, timed on the first ``resnet_batches`` batches of its epoch and
    scaled to the epoch (``None``: whole epochs; a quick run times 12), at ``resnet_width`` (tests
    take tiny ones); ``data`` replaces the training set (tests); ``blocks`` and ``settle_s``: the
    turns each library takes, and the pause between (see :mod:`.timing`).
    """

    quick: bool = False
    engines: tuple[str, ...] = ENGINE_KEYS
    sweep: bool = False
    warmups: int | None = None
    repeats: int | None = None
    series: tuple | None = None
    point_budget_s: float | None = None
    matmul_n_cpu: int | None = None
    matmul_n_gpu: int | None = None
    data: BenchData | None = None
    whole_runs: bool = True
    resnet: bool = True
    resnet_batches: int | None = None
    resnet_width: int = 64
    blocks: int = 3
    settle_s: float = 0.5

    def resolved(self) -> "BenchConfig":
        defaults = {k: v for k, v in DEFAULTS[self.quick].items() if getattr(self, k) is None}
        return replace(self, engines=tuple(self.engines), **defaults)


def run_bench(config: BenchConfig | None = None, log=print) -> dict:
    """Run the benchmark; return every figure as a JSON-ready dict (see :mod:`numpy_mnist.bench.report`)."""
    cfg = (config or BenchConfig()).resolved()
    started, cpu_start = time.perf_counter(), cpu_snapshot()
    blas = numpy_blas_threads()
    engines = make_engines(cfg.engines, torch_threads=blas["threads"])
    unavailable = {e.key: why for e in engines if (why := e.unavailable()) is not None}
    available = [e for e in engines if e.key not in unavailable]
    data = cfg.data or training_data()
    log(f"data: {data.source}, {data.rows:,} x {data.x.shape[1]} {data.x.dtype}")
    for key, why in unavailable.items():
        log(f"engine {key} unavailable: {why}")

    log("references: streaming pass and matrix-product rate")
    refs = references(data.x, available, cfg)
    # before machine_info: PyTorch's threads are set now
    epochs = time_epochs(BOOK_WORKLOADS, available, data, refs, cfg, cfg.warmups, cfg.repeats, log)
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
    if cfg.resnet:
        resnet = Workload("resnet18", batch_size=64, width=cfg.resnet_width, batches=cfg.resnet_batches)
        repeats = min(cfg.repeats, RESNET_REPEATS)
        results["epochs"] += time_epochs((resnet,), available, data, refs, cfg, 1, repeats, log)
        results["resnet18"] = resnet_facts(resnet, available, data)
    if cfg.sweep:
        log(f"sweep: {len(cfg.series)} series")
        results["sweep"] = run_sweep(available, data, cfg, log=log)
    if cfg.whole_runs:
        results["whole_runs"] = run_whole_runs(log=log)
    results["targets"] = evaluate_targets(results)
    results["elapsed_s"] = time.perf_counter() - started
    results["machine"]["other_programs"] = other_programs(cpu_start)
    return results


def time_epochs(workloads, engines, data: BenchData, refs: dict, cfg: BenchConfig, warmups: int, repeats: int,
                log=print) -> list[dict]:
    """One epoch of each workload on each engine that runs it, and its BLAS floor, timed interleaved: the table's
    rows.  A ResNet-18 timed on a prefix of its epoch's batches is scaled to the whole epoch."""
    log(f"one epoch of {', '.join(w.name for w in workloads)} on {len(engines)} engines, "
        f"{warmups} warm-ups + {repeats} interleaved repeats")
    trials = {}
    for w in workloads:
        trials.update({(w.name, e.key): e.prepare(w, data.x, data.y) for e in engines if e.runs(w)})
        trials[(w.name, "blas-floor")] = blas_floor(w, data.x)
    timed = time_trials(trials, engines, warmups=warmups, repeats=repeats, blocks=cfg.blocks, settle_s=cfg.settle_s)
    rows = []
    for w in workloads:
        scale = data.rows // w.batch_size / w.timed_batches(data.rows) if w.batches else 1.0
        ran = {key: m.scaled(scale) for (name, key), m in timed.items() if name == w.name}
        log(f"  {w.name}: " + ", ".join(f"{key} {m.median_s * 1e3:.2f} ms" for key, m in ran.items()))
        rows += [_epoch_row(w, e, ran, refs["gpu" if e.is_gpu else "cpu"], data) for e in engines if e.runs(w)]
    return rows


def _epoch_row(w: Workload, e, ran: dict, ref: dict, data: BenchData) -> dict:
    """The table's row of ``w`` on engine ``e``, from the measurements ``ran`` by engine key and the device's
    references ``ref``."""
    m, torch_cpu = ran[e.key], ran.get("torch-cpu")
    row = {"model": w.name, "workload": w.as_dict(), "engine": e.key, "label": e.label,
           "device": "gpu" if e.is_gpu else "cpu", **m.as_dict(), "x_stream": m.median_s / ref["stream"]["seconds"],
           "x_hardware_bound": m.median_s / hardware_bound_s(w, data.rows, data.x.nbytes, ref),
           "speedup_vs_torch_cpu": torch_cpu.median_s / m.median_s if torch_cpu else None}
    if e.key == "numpy":
        row["blas_floor"] = ran["blas-floor"].as_dict()
    return row


def resnet_facts(workload: Workload, engines, data: BenchData) -> dict:
    """How the ResNet-18 rows were timed, and the NumPy epoch's peak memory: the most memory ``tracemalloc`` saw held
    at once while building the model and training a few batches, plus the training set."""
    steps = data.rows // workload.batch_size
    facts = {**workload.as_dict(), "epoch_batches": steps, "batches_timed": workload.timed_batches(data.rows),
             "warmup_batches": WARM_BATCHES, "optimizer": "fastai Adam + one-cycle (PyTorch: AdamW + OneCycleLR)"}
    numpy = next((e for e in engines if e.key == "numpy"), None)
    if numpy is not None:
        tracemalloc.start()  # NumPy reports its arrays to it
        try:
            numpy.prepare(replace(workload, batches=WARM_BATCHES), data.x, data.y).run()
            traced = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        facts["peak_memory"] = {
            "bytes": traced + data.x.nbytes + data.y.nbytes, "traced_bytes": traced, "data_bytes": data.x.nbytes,
            "how": f"tracemalloc's peak while building the model and training {WARM_BATCHES} batches (model, "
                   "optimizer, activations, gradients), plus the training set",
            "process_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    return facts
