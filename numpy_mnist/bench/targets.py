"""The speed targets, in one table, each named by what it measures, checked against one run's figures.

A target is a ratio of two epoch medians (``slow`` time / ``fast`` time: how many times faster
``fast`` trains), an epoch in milliseconds, an epoch over one CPU streaming pass or over its own
matrix-product floor, or (the ResNet-18's) a peak memory.  Ratios come from one run on one machine,
so they travel between machines; absolute times do not.  Besides its goal, a target may have a
floor: the least ``numpy-mnist bench --quick``'s one-run ratio may show after any change (the goal
less room for a noisy 2-core machine); or a stretch: the goal beyond the goal.  Where it is known
why a goal is unmet, one line says so; a target whose engines did not run says why.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from numpy_mnist.bench.engines import make_engines
from numpy_mnist.bench.machine import NO_GPU

__all__ = ["Target", "TARGETS", "evaluate_targets"]

#: ``Target.fast`` for an epoch measured in CPU streaming passes, and in its own BLAS floor.
STREAM, FLOOR = "stream", "blas-floor"
_CHECKS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_UNITS = {"ms": " ms", "x": "x", "GB": " GB"}
_GPU_ENGINES = frozenset(e.key for e in make_engines() if e.is_gpu)


@dataclass(frozen=True)
class Target:
    """``slow``'s epoch over ``fast``'s (``fast``: an engine, :data:`STREAM`, :data:`FLOOR`, or ``None`` for ms)."""

    key: str
    what: str
    model: str
    slow: str
    fast: str | None
    goal: tuple[str, float]
    floor: float | None = None
    stretch: float | None = None
    why_unmet: str = ""

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(e for e in (self.slow, self.fast) if e not in (None, STREAM, FLOOR))

    def measured(self, results: dict) -> float | None:
        top = _epoch(results, self.model, self.slow)
        if self.fast is None:
            bottom = 1e-3  # the epoch in milliseconds
        elif self.fast == STREAM:
            bottom = results["references"]["cpu"]["stream"]["seconds"]
        elif self.fast == FLOOR:
            bottom = ((_row(results, self.model, self.slow) or {}).get("blas_floor") or {}).get("median_s")
        else:
            bottom = _epoch(results, self.model, self.fast)
        return top / bottom if top and bottom else None


_LAUNCHES = ("the array path launches about 20 small kernels per batch, so launch overhead, not arithmetic, "
             "sets its time; the fused graph is the GPU fast path")
_BOOK = (("linear1", "linear1", 0.4), ("simple_net", "simple_net(30)", 0.8))
_RESNET = "resnet18"

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
    Target("cpu_resnet18_vs_torch", "CPU: ResNet-18 epoch against PyTorch eager", _RESNET, "torch-cpu", "numpy",
           (">=", 1), stretch=1.3),
    Target("cpu_resnet18_vs_floor", "CPU: ResNet-18 epoch over its convolutions' matrix products alone", _RESNET,
           "numpy", FLOOR, ("<=", 1.6), why_unmet="profiled at width 64 on 2 cores, a batch spends about a quarter "
           "of its time in Adam's step (11 M parameters, elementwise on one NumPy thread) and most of the rest beyond "
           "the products in gathering each convolution's slices (im2col, twice), adding them back (col2im) and the "
           "batch norms"),
    *(Target(f"gpu_{m}_vs_torch", f"GPU: {m} epoch, numpy-mnist CuPy (array path) against PyTorch CUDA eager", row,
             "torch-cuda", "cupy", (">=", 3), why_unmet=_LAUNCHES) for m, row, _ in _BOOK),
    *(Target(f"fused_{m}_epoch", f"GPU: {row} epoch, numpy-mnist fused CUDA graph", row, "fused-graph", None,
             ("<=", ms)) for m, row, ms in _BOOK),
    *(Target(f"fused_{m}_vs_{slow}", f"GPU: {m} epoch, fused graph against {what}", row, engine, "fused-graph",
             (">=", goal)) for slow, engine, what, goal in (("torch_graph", "torch-cuda-graph", "PyTorch's CUDA-graph "
                                                          "replay", 5), ("torch_eager", "torch-cuda", "PyTorch CUDA "
                                                          "eager", 40)) for m, row, _ in _BOOK),
    *(Target(f"fused_{m}_vs_numpy", f"GPU ahead of CPU at the book's sizes: {m} epoch, fused graph against "
             "numpy-mnist NumPy", row, "numpy", "fused-graph", (">", 1)) for m, row, _ in _BOOK),
    Target("gpu_resnet18_vs_numpy", "GPU: ResNet-18 epoch, numpy-mnist CuPy against numpy-mnist NumPy", _RESNET,
           "numpy", "cupy", (">=", 30)),
    Target("gpu_resnet18_vs_torch", "GPU: ResNet-18 epoch, numpy-mnist CuPy within 2x of PyTorch CUDA eager "
           "(cuDNN)", _RESNET, "torch-cuda", "cupy", (">=", 0.5)),
)


def evaluate_targets(results: dict) -> list[dict]:
    """Every target against this run's figures: the measured value, whether it is met, and a note.

    The note says why a value is missing, or (where known) why a goal is unmet.  After the table's
    targets come the ResNet-18's peak memory, the whole runs' (one per run in
    ``results["whole_runs"]``) and the crossovers.
    """
    ran = {r["engine"] for r in results["epochs"]}
    out = []
    for t in TARGETS:
        entry = _entry(t.key, t.what, t.goal, "ms" if t.fast is None else "x", t.measured(results))
        for name, bound in (("floor", t.floor), ("stretch", t.stretch)):
            if bound is not None:
                held = None if entry["measured"] is None else bool(entry["measured"] >= bound)
                entry[name], entry[f"{name}_held"] = bound, held
        if entry["measured"] is None:
            entry["note"] = _why_missing(results, t.engines, ran)
        elif not entry["met"]:
            entry["note"] = t.why_unmet
        out.append(entry)
    memory = (results.get("resnet18") or {}).get("peak_memory")
    if memory is not None:
        out.append(_entry("cpu_resnet18_memory", "CPU: ResNet-18 peak memory of the NumPy epoch at batch 64",
                          ("<", 2), "GB", memory["bytes"] / 1e9))
    for run in results.get("whole_runs", []):
        out.append({**_entry(f"whole_{run['key']}", f"GPU: whole run `{run['command']}`, CuPy (fused graph) "
                             "against NumPy, training time", (">=", run["goal"]), "x", run.get("speedup")),
                    "note": run["note"]})
    return out + _crossovers(results)


def _entry(key: str, what: str, goal: tuple[str, float], unit: str, value: float | None) -> dict:
    op, number = goal
    return {"key": key, "what": what, "goal": f"{op} {number:g}{_UNITS[unit]}", "unit": unit, "measured": value,
            "met": None if value is None else bool(_CHECKS[op](value, number)), "note": ""}


def _row(results: dict, model: str, engine: str) -> dict | None:
    return next((r for r in results["epochs"] if r["model"] == model and r["engine"] == engine), None)


def _epoch(results: dict, model: str, engine: str) -> float | None:
    return (_row(results, model, engine) or {}).get("median_s")


def _gpu_missing(results: dict) -> bool:
    return results.get("machine", {}).get("gpu", {}).get("name") == NO_GPU


def _why_missing(results: dict, engines, ran: set) -> str:
    missing = [e for e in engines if e not in ran]
    if _gpu_missing(results) and any(e in _GPU_ENGINES for e in missing):
        return NO_GPU
    if not missing:
        return "the ResNet-18 rows were not run (--no-resnet)"
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
