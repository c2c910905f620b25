"""The speed targets, in one table, each named by what it measures, checked against one run's figures.

A target is a ratio of two epoch medians at the book's sizes (``slow`` time / ``fast`` time: how
many times faster ``fast`` trains), an epoch in milliseconds, or an epoch over one CPU streaming
pass.  Ratios come from one run on one machine, so they travel between machines; absolute times
do not.  Besides its goal, a target may have a floor: the least ``numpy-mnist bench --quick``'s
one-run ratio may show after any change (the goal less room for a noisy 2-core machine).  Where it
is known why a goal is unmet, one line says so; a target whose engines did not run says why.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from numpy_mnist.bench.engines import make_engines
from numpy_mnist.bench.machine import NO_GPU

__all__ = ["Target", "TARGETS", "evaluate_targets"]

#: ``Target.fast`` for an epoch measured in CPU streaming passes.
STREAM = "stream"
_CHECKS = {">=": operator.ge, "<=": operator.le, ">": operator.gt}
_GPU_ENGINES = frozenset(e.key for e in make_engines() if e.is_gpu)


@dataclass(frozen=True)
class Target:
    """``slow``'s epoch over ``fast``'s (``fast``: an engine, :data:`STREAM`, or ``None`` for milliseconds)."""

    key: str
    what: str
    model: str
    slow: str
    fast: str | None
    goal: tuple[str, float]
    floor: float | None = None
    why_unmet: str = ""

    @property
    def unit(self) -> str:
        return "ms" if self.fast is None else "x"

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(e for e in (self.slow, self.fast) if e not in (None, STREAM))

    def measured(self, results: dict) -> float | None:
        top = _epoch(results, self.model, self.slow)
        if self.fast is None:
            bottom = 1e-3  # the epoch in milliseconds
        elif self.fast == STREAM:
            bottom = results["references"]["cpu"]["stream"]["seconds"]
        else:
            bottom = _epoch(results, self.model, self.fast)
        return top / bottom if top and bottom else None


_LAUNCHES = ("the array path launches about 20 small kernels per batch, so launch overhead, not arithmetic, "
             "sets its time; the fused graph is the GPU fast path")

TARGETS = (
    Target("cpu_linear1_vs_torch", "CPU: linear1 epoch against PyTorch eager", "linear1", "torch-cpu", "numpy",
           (">=", 4), floor=2.2, why_unmet="the BLAS calls alone, two matrix-vector products per batch (the BLAS "
           "floor above), take most of the epoch: going further needs a compiled kernel per batch"),
    Target("cpu_simple_net_vs_torch", "CPU: simple_net epoch against PyTorch eager", "simple_net(30)", "torch-cpu",
           "numpy", (">=", 2), floor=1.6, why_unmet="the BLAS calls alone (the BLAS floor above) take most of the "
           "epoch: its two skinny 256 x 784 x 30 products per batch run at about half the large-matrix rate"),
    Target("cpu_linear1_vs_stream", "CPU: linear1 epoch in streaming passes over the training data", "linear1",
           "numpy", STREAM, ("<=", 2), why_unmet="every image is read twice (forward and backward), one batch per "
           "BLAS call: on a quiet 2-core machine the BLAS floor alone is about 3 streaming passes"),
    Target("gpu_linear1_vs_torch", "GPU: linear1 epoch, numpy-mnist CuPy (array path) against PyTorch CUDA eager",
           "linear1", "torch-cuda", "cupy", (">=", 3), why_unmet=_LAUNCHES),
    Target("gpu_simple_net_vs_torch", "GPU: simple_net epoch, numpy-mnist CuPy (array path) against PyTorch CUDA "
           "eager", "simple_net(30)", "torch-cuda", "cupy", (">=", 3), why_unmet=_LAUNCHES),
    Target("fused_linear1_epoch", "GPU: linear1 epoch, numpy-mnist fused CUDA graph", "linear1", "fused-graph", None,
           ("<=", 0.4)),
    Target("fused_simple_net_epoch", "GPU: simple_net(30) epoch, numpy-mnist fused CUDA graph", "simple_net(30)",
           "fused-graph", None, ("<=", 0.8)),
    Target("fused_linear1_vs_torch_graph", "GPU: linear1 epoch, fused graph against PyTorch's CUDA-graph replay",
           "linear1", "torch-cuda-graph", "fused-graph", (">=", 5)),
    Target("fused_simple_net_vs_torch_graph", "GPU: simple_net epoch, fused graph against PyTorch's CUDA-graph "
           "replay", "simple_net(30)", "torch-cuda-graph", "fused-graph", (">=", 5)),
    Target("fused_linear1_vs_torch_eager", "GPU: linear1 epoch, fused graph against PyTorch CUDA eager", "linear1",
           "torch-cuda", "fused-graph", (">=", 40)),
    Target("fused_simple_net_vs_torch_eager", "GPU: simple_net epoch, fused graph against PyTorch CUDA eager",
           "simple_net(30)", "torch-cuda", "fused-graph", (">=", 40)),
    Target("fused_linear1_vs_numpy", "GPU ahead of CPU at the book's sizes: linear1 epoch, fused graph against "
           "numpy-mnist NumPy", "linear1", "numpy", "fused-graph", (">", 1)),
    Target("fused_simple_net_vs_numpy", "GPU ahead of CPU at the book's sizes: simple_net epoch, fused graph "
           "against numpy-mnist NumPy", "simple_net(30)", "numpy", "fused-graph", (">", 1)),
)


def evaluate_targets(results: dict) -> list[dict]:
    """Every target against this run's figures: the measured value, whether it is met, and a note.

    The note says why a value is missing, or (where known) why a goal is unmet.  After the table's
    targets come the whole runs' (one per run in ``results["whole_runs"]``) and the crossovers.
    """
    ran = {r["engine"] for r in results["epochs"]}
    out = []
    for t in TARGETS:
        entry = _entry(t.key, t.what, t.goal, t.unit, t.measured(results))
        if t.floor is not None:
            held = None if entry["measured"] is None else bool(entry["measured"] >= t.floor)
            entry["floor"], entry["floor_held"] = t.floor, held
        if entry["measured"] is None:
            entry["note"] = _why_missing(results, t.engines, ran)
        elif not entry["met"]:
            entry["note"] = t.why_unmet
        out.append(entry)
    for run in results.get("whole_runs", []):
        out.append({**_entry(f"whole_{run['key']}", f"GPU: whole run `{run['command']}`, CuPy (fused graph) "
                             "against NumPy, training time", (">=", run["goal"]), "x", run.get("speedup")),
                    "note": run["note"]})
    return out + _crossovers(results)


def _entry(key: str, what: str, goal: tuple[str, float], unit: str, value: float | None) -> dict:
    op, number = goal
    return {"key": key, "what": what, "goal": f"{op} {number:g}" + (" ms" if unit == "ms" else "x"), "unit": unit,
            "measured": value, "met": None if value is None else bool(_CHECKS[op](value, number)), "note": ""}


def _epoch(results: dict, model: str, engine: str) -> float | None:
    return next((r["median_s"] for r in results["epochs"] if r["model"] == model and r["engine"] == engine), None)


def _gpu_missing(results: dict) -> bool:
    return results.get("machine", {}).get("gpu", {}).get("name") == NO_GPU


def _why_missing(results: dict, engines, ran: set) -> str:
    missing = [e for e in engines if e not in ran]
    if _gpu_missing(results) and any(e in _GPU_ENGINES for e in missing):
        return NO_GPU
    return "an engine it needs did not run: " + ", ".join(
        f"{e} ({results['unavailable'].get(e, 'not among --engines')})" for e in missing)


def _crossovers(results: dict) -> list[dict]:
    """The sweep's crossovers, stated per axis: the GPU's against the CPU's, the fused graph's against NumPy's."""
    sweep = results.get("sweep")
    fused = {"key": "fused_crossover", "what": "GPU: the fused graph against numpy-mnist NumPy, per sweep axis",
             "goal": "stated", "unit": "x", "measured": None, "met": None,
             "note": "no sweep in this run: run with --sweep to state the crossover per axis"}
    if sweep is None:
        return [fused]
    gpu = {"key": "gpu_crossover", "what": "GPU: smallest size where the GPU beats the CPU", "goal": "stated",
           "unit": "x", "measured": None, "met": None if _gpu_missing(results) else True,
           "note": "; ".join(f"{s['name']}: {s['crossover']['statement']}" for s in sweep["series"])}
    if _gpu_missing(results):
        gpu["note"] = "no GPU found: no GPU engine ran, so no crossover could be measured"
    swept = {e["key"] for e in sweep["engines"]}
    if not {"fused-graph", "numpy"} <= swept:
        fused["note"] = _why_missing(results, ("fused-graph", "numpy"), swept)
        return [gpu, fused]
    fused["met"], fused["note"] = True, "; ".join(f"{s['name']}: {_fused_statement(s)}" for s in sweep["series"])
    return [gpu, fused]


def _fused_statement(series: dict) -> str:
    first = series["crossover"]["fused_value"]
    if first is None:
        return "the fused graph never beats NumPy over this range"
    smallest = " (the smallest size swept)" if first == series["points"][0]["value"] else ""
    return f"the fused graph beats NumPy from {first:,}{smallest}"
