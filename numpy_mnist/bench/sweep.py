"""The sweep: where does the GPU start to win?  Batch size, hidden width and dataset size.

Each series varies one thing from the book's setting (``linear1`` or ``simple_net(30)``, batch 256,
the 12,396 real rows) and times one epoch at every point on every available engine, interleaved.
The number of repeats is scaled to the cost of a point (at least ``min_repeats``), so the whole
sweep runs unattended in minutes on a CPU.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from numpy_mnist.bench.data import BenchData, grow_rows
from numpy_mnist.bench.engines import Workload
from numpy_mnist.bench.timing import time_interleaved

__all__ = ["Series", "FULL_SWEEP", "QUICK_SWEEP", "run_sweep", "crossover"]


@dataclass(frozen=True)
class Series:
    """One line of plots: ``axis`` ("batch_size", "hidden" or "rows") over ``values`` for ``model``."""

    axis: str
    model: str
    values: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.axis}/{self.model}"

    def workload(self, value: int) -> tuple[Workload, int | None]:
        """The workload at ``value`` and the number of rows to train on (``None``: the real set)."""
        if self.axis == "batch_size":
            return Workload(self.model, batch_size=value), None
        if self.axis == "hidden":
            return Workload(self.model, hidden=value), None
        if self.axis == "rows":
            return Workload(self.model), value
        raise ValueError(f"unknown sweep axis {self.axis!r}")


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


def run_sweep(engines, data: BenchData, series=FULL_SWEEP, *, warmups: int = 1, max_repeats: int = 9,
              min_repeats: int = 3, point_budget_s: float = 3.0, settle_s: float = 0.5, log=print) -> dict:
    """Time every point of every series on every engine; return the figures and the crossovers."""
    available = [e for e in engines if e.unavailable() is None]
    grown: dict[int, BenchData] = {}
    out = []
    for s in series:
        points = []
        for value in s.values:
            workload, rows = s.workload(value)
            if rows is None:
                rows_data = data
            else:
                if rows not in grown:
                    grown.clear()  # keep at most one large set in memory
                    gc.collect()
                    grown[rows] = grow_rows(data, rows)
                rows_data = grown[rows]
            trials = {e.key: e.prepare(workload, rows_data.x, rows_data.y) for e in available}
            framework = {e.key: e.framework for e in available}
            timed = time_interleaved(trials, warmups=warmups, repeats=max_repeats, budget_s=point_budget_s,
                                     min_repeats=min_repeats, group_of=framework.get, settle_s=settle_s)
            del trials
            for e in available:
                e.release()
            gc.collect()
            point = {"value": value, "rows": rows_data.rows, "data": rows_data.source, **workload.as_dict(),
                     "engines": {key: m.as_dict() for key, m in timed.items()}}
            points.append(point)
            log(f"  {s.name} = {value:>9,}: " + ", ".join(f"{k} {m.median_s * 1e3:9.2f} ms" for k, m in timed.items()))
        out.append({"axis": s.axis, "model": s.model, "name": s.name, "points": points,
                    "crossover": crossover(points, engines)})
    grown.clear()
    return {"series": out, "engines": [e.describe() for e in available]}


def crossover(points: list[dict], engines) -> dict:
    """The smallest sweep value at which the fastest GPU engine beats the fastest CPU engine.

    Also compares numpy-mnist with itself (CuPy against NumPy) where both ran.
    """
    gpu = [e.key for e in engines if e.is_gpu]
    cpu = [e.key for e in engines if not e.is_gpu]

    def first_win(gpu_keys, cpu_keys):
        for p in points:
            g = [p["engines"][k]["median_s"] for k in gpu_keys if k in p["engines"]]
            c = [p["engines"][k]["median_s"] for k in cpu_keys if k in p["engines"]]
            if g and c and min(g) < min(c):
                return p["value"]
        return None

    ran = set().union(*(p["engines"] for p in points)) if points else set()
    if not any(k in ran for k in gpu):
        return {"value": None, "numpy_mnist_value": None,
                "statement": "no GPU found: no GPU engine ran, so there is no crossover to measure"}
    if not any(k in ran for k in cpu):
        return {"value": None, "numpy_mnist_value": None, "statement": "no CPU engine ran"}
    value = first_win(gpu, cpu)
    ours = first_win(["cupy", "fused-graph"], ["numpy"])
    if value is None:
        statement = "the GPU never beats the CPU over this range"
    else:
        statement = f"the GPU first beats the CPU at {value:,}"
    if ours is not None:
        statement += f"; numpy-mnist on CuPy first beats numpy-mnist on NumPy at {ours:,}"
    return {"value": value, "numpy_mnist_value": ours, "statement": statement}
