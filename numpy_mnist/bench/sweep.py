"""The sweep: where does the GPU start to win?  Batch size, hidden width and dataset size.

Each series varies one thing from the book's setting (``linear1`` or ``simple_net(30)``, batch 256,
the 12,396 real rows) and times one epoch at every point on every available engine, interleaved.
The number of repeats is scaled to the cost of a point (at least ``min_repeats``), so the whole
sweep runs unattended in minutes on a CPU.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass

from numpy_mnist.bench.data import BenchData, grow_rows
from numpy_mnist.bench.engines import Workload
from numpy_mnist.bench.timing import time_interleaved

__all__ = ["Series", "FULL_SWEEP", "QUICK_SWEEP", "run_sweep", "time_trials", "crossover"]


@dataclass(frozen=True)
class Series:
    """One line of plots: ``axis`` ("batch_size", "hidden" or "rows") over ``values`` for ``model``."""

    axis: str
    model: str
    values: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.axis}/{self.model}"

    def point(self, value: int, data: BenchData) -> tuple[Workload, BenchData]:
        """The workload at ``value`` and the data it trains on (``data``, or on the rows axis ``value`` rows of it)."""
        if self.axis == "rows":
            return Workload(self.model), grow_rows(data, value)
        return Workload(self.model, **{self.axis: value}), data  # batch_size or hidden


BATCH_SIZES = (64, 128, 256, 512, 1024, 2048, 4096, 8192)
HIDDEN = (30, 64, 128, 256, 512, 1024, 2048, 4096)
ROWS = (12_396, 50_000, 200_000, 1_000_000)

#: The sweep the issue asks for: batch 64..8192, hidden 30..4096, rows 12,396..10^6.
FULL_SWEEP = (
    Series("batch_size", "linear1", BATCH_SIZES),
    Series("batch_size", "simple_net", BATCH_SIZES),
    Series("hidden", "simple_net", HIDDEN),
    Series("rows", "linear1", ROWS),
    Series("rows", "simple_net", ROWS),
)

#: A small sweep for a first look (and for tests, with tinier values still).
QUICK_SWEEP = (
    Series("batch_size", "linear1", (64, 256, 1024)),
    Series("hidden", "simple_net", (30, 256)),
    Series("rows", "linear1", (12_396, 50_000)),
)


def run_sweep(engines, data: BenchData, cfg, log=print) -> dict:
    """Time one epoch at every point of every series of ``cfg.series`` on every engine (each available),
    interleaved per framework; return the figures and the crossovers.  Repeats: as many as fit in
    ``cfg.point_budget_s`` per point, from 3 to 9."""
    timing = {"warmups": 1, "repeats": min(cfg.repeats, 9), "budget_s": cfg.point_budget_s, "settle_s": cfg.settle_s}
    out = []
    for s in cfg.series:
        points = []
        for value in s.values:
            workload, at = s.point(value, data)
            trials = {(workload.name, e.key): e.prepare(workload, at.x, at.y) for e in engines}
            ran = {key: m.as_dict() for (_, key), m in time_trials(trials, engines, **timing).items()}
            points.append({"value": value, "rows": at.rows, "data": at.source, **workload.as_dict(), "engines": ran})
            log(f"  {s.name} = {value:>9,}: " + ", ".join(f"{k} {m['median_s'] * 1e3:9.2f} ms" for k, m in ran.items()))
        out.append({"axis": s.axis, "model": s.model, "name": s.name, "points": points,
                    "crossover": crossover(points, engines)})
    return {"series": out, "engines": [e.describe() for e in engines]}


def time_trials(trials: dict, engines, **timing) -> dict:
    """``trials``, keyed ``(workload name, engine key)``, timed interleaved, each engine's framework taking its turns
    (a trial of no engine with numpy-mnist's); then every trial dropped and the engines' device memory given back."""
    framework = {e.key: e.framework for e in engines}
    timed = time_interleaved(trials, group_of=lambda key: framework.get(key[1], "numpy-mnist"), **timing)
    trials.clear()
    for e in engines:
        e.release()
    gc.collect()
    return timed


def crossover(points: list[dict], engines) -> dict:
    """The smallest sweep value at which the fastest GPU engine beats the fastest CPU engine.

    Also numpy-mnist against itself where both ran: CuPy or the fused graph against NumPy
    (``numpy_mnist_value``), and the fused graph alone against NumPy (``fused_value``).
    """
    gpu, cpu = [e.key for e in engines if e.is_gpu], [e.key for e in engines if not e.is_gpu]

    def first_win(fast_keys, slow_keys):
        """The first value where the fastest of ``fast_keys`` beats the fastest of ``slow_keys`` (both ran)."""
        def fastest(p, keys, none):
            return min((p["engines"][k]["median_s"] for k in keys if k in p["engines"]), default=none)

        return next((p["value"] for p in points if fastest(p, fast_keys, math.inf) < fastest(p, slow_keys, -math.inf)),
                    None)

    ran = set().union(*(p["engines"] for p in points))
    found = {"value": None, "numpy_mnist_value": None, "fused_value": None}
    if not ran & set(gpu):
        return {**found, "statement": "no GPU found: no GPU engine ran, so there is no crossover to measure"}
    if not ran & set(cpu):
        return {**found, "statement": "no CPU engine ran"}
    found = {"value": first_win(gpu, cpu), "numpy_mnist_value": first_win(["cupy", "fused-graph"], ["numpy"]),
             "fused_value": first_win(["fused-graph"], ["numpy"])}
    statement = ("the GPU never beats the CPU over this range" if found["value"] is None
                 else f"the GPU first beats the CPU at {found['value']:,}")
    if found["numpy_mnist_value"] is not None:
        statement += f"; numpy-mnist on CuPy first beats numpy-mnist on NumPy at {found['numpy_mnist_value']:,}"
    return {**found, "statement": statement}
