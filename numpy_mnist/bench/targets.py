"""The speed targets, in one table, each named by what it measures, checked against one run's figures.

A target is a ratio of two epoch medians (``slow`` time / ``fast`` time: how many times faster
``fast`` trains), an epoch in milliseconds, an epoch over one CPU streaming pass or over its own
matrix-product floor, or (the ResNet-18's) a peak memory; then the whole runs' ratios and the
sweep's crossovers, stated.  Ratios come from one run on one machine,
so they travel between machines; absolute times do not.  Besides its goal, a target may have a
floor: the least ``numpy-mnist bench --quick``'s one-run ratio may show after any change (the goal
less room for a noisy 2-core machine); or a stretch: the goal beyond the goal.  Where it is known
why a goal is unmet, one line says so; a target whose engines did not run says why.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

from numpy_mnist.bench.engines import ENGINE_KEYS, make_engines
from numpy_mnist.bench.machine import NO_GPU

__all__ = ["Target", "TARGETS", "evaluate_targets"]

#: ``Target.fast`` for an epoch in CPU streaming passes, over its own BLAS floor, in ms; and for a peak memory in GB.
STREAM, FLOOR, MS, GB = "stream", "blas-floor", "ms", "GB"
_CHECKS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_GPU_ENGINES = frozenset(e.key for e in make_engines() if e.is_gpu)


@dataclass(frozen=True)
class Target:
    """``slow``'s epoch of ``model`` over ``fast``'s: an engine's, :data:`STREAM`, :data:`FLOOR` or :data:`MS`
    (or, ``fast`` :data:`GB`, the ``slow`` engine's peak memory)."""

    key: str
    what: str
    model: str
    slow: str
    fast: str
    goal: tuple[str, float]
    floor: float | None = None
    stretch: float | None = None
    why_unmet: str = ""

    def measured(self, results: dict) -> float | None:
        if self.fast == GB:
            memory = (results.get("resnet18") or {}).get("peak_memory")
            return memory["bytes"] / 1e9 if memory else None
        row = _row(results, self.model, self.slow)
        special = {MS: 1e-3, STREAM: results["references"]["cpu"]["stream"]["seconds"],
                   FLOOR: row.get("blas_floor", {}).get("median_s")}
        bottom = special[self.fast] if self.fast in special else _row(results, self.model, self.fast).get("median_s")
        return row["median_s"] / bottom if row.get("median_s") and bottom else None


_LAUNCHES = ("the array path launches about 20 small kernels per batch, so launch overhead, not arithmetic, "
             "sets its time; the fused graph is the GPU fast path")
_BOOK = (("linear1", "linear1", 0.4), ("simple_net", "simple_net(30)", 0.8))
_RESNET = "resnet18"
#: The fused graph against slower engines, both book models: key suffix, engine, what (``{m}``: the model), goal.
_FUSED_AGAINST = (
    ("torch_graph", "torch-cuda-graph", "GPU: {m} epoch, fused graph against PyTorch's CUDA-graph replay", (">=", 5)),
    ("torch_eager", "torch-cuda", "GPU: {m} epoch, fused graph against PyTorch CUDA eager", (">=", 40)),
    ("numpy", "numpy", "GPU ahead of CPU at the book's sizes: {m} epoch, fused graph against numpy-mnist NumPy",
     (">", 1)),
)

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
    *(Target(f"fused_{m}_epoch", f"GPU: {row} epoch, numpy-mnist fused CUDA graph", row, "fused-graph", MS,
             ("<=", ms)) for m, row, ms in _BOOK),
    *(Target(f"fused_{m}_vs_{vs}", what.format(m=m), row, slow, "fused-graph", goal)
      for vs, slow, what, goal in _FUSED_AGAINST for m, row, _ in _BOOK),
    Target("gpu_resnet18_vs_numpy", "GPU: ResNet-18 epoch, numpy-mnist CuPy against numpy-mnist NumPy", _RESNET,
           "numpy", "cupy", (">=", 30)),
    Target("gpu_resnet18_vs_torch", "GPU: ResNet-18 epoch, numpy-mnist CuPy within 2x of PyTorch CUDA eager "
           "(cuDNN)", _RESNET, "torch-cuda", "cupy", (">=", 0.5)),
    Target("cpu_resnet18_memory", "CPU: ResNet-18 peak memory of the NumPy epoch at batch 64", _RESNET, "numpy", GB,
           ("<", 2)),
)


def evaluate_targets(results: dict) -> list[dict]:
    """Every target against this run's figures: the measured value, whether it is met, and a note.

    The note says why a value is missing, or (where known) why a goal is unmet.  After the table's
    targets come the whole runs' (one per run in ``results["whole_runs"]``) and the crossovers.
    """
    ran = {r["engine"] for r in results["epochs"]}
    out = []
    for t in TARGETS:
        entry = _entry(t.key, t.what, t.goal, t.fast if t.fast in (MS, GB) else "x", value := t.measured(results))
        for name, bound in (("floor", t.floor), ("stretch", t.stretch)):
            if bound is not None:
                entry[name], entry[f"{name}_held"] = bound, None if value is None else bool(value >= bound)
        if value is None:
            entry["note"] = _why_missing(results, [e for e in (t.slow, t.fast) if e in ENGINE_KEYS], ran)
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
    return {"key": key, "what": what, "goal": f"{op} {number:g}{'x' if unit == 'x' else ' ' + unit}", "unit": unit,
            "measured": value, "met": None if value is None else bool(_CHECKS[op](value, number)), "note": ""}


def _stated(key: str, what: str, met: bool | None, note: str) -> dict:
    """A goal that is a statement (``note``), not a number."""
    return {"key": key, "what": what, "goal": "stated", "unit": "x", "measured": None, "met": met, "note": note}


def _row(results: dict, model: str, engine: str) -> dict:
    return next((r for r in results["epochs"] if r["model"] == model and r["engine"] == engine), {})


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
    sweep, no_gpu = results.get("sweep"), _gpu_missing(results)
    fused = "GPU: the fused graph against numpy-mnist NumPy, per sweep axis"
    if sweep is None:
        return [_stated("fused_crossover", fused, None, "no sweep in this run: run with --sweep to state the crossover "
                        "per axis")]
    gpu = _stated("gpu_crossover", "GPU: smallest size where the GPU beats the CPU", None if no_gpu else True,
                  "no GPU found: no GPU engine ran, so no crossover could be measured" if no_gpu else
                  "; ".join(f"{s['name']}: {s['crossover']['statement']}" for s in sweep["series"]))
    swept = {e["key"] for e in sweep["engines"]}
    if not {"fused-graph", "numpy"} <= swept:
        return [gpu, _stated("fused_crossover", fused, None, _why_missing(results, ("fused-graph", "numpy"), swept))]
    return [gpu, _stated("fused_crossover", fused, True, "; ".join(f"{s['name']}: {_fused_statement(s)}"
                                                                  for s in sweep["series"]))]


def _fused_statement(series: dict) -> str:
    first = series["crossover"]["fused_value"]
    if first is None:
        return "the fused graph never beats NumPy over this range"
    smallest = " (the smallest size swept)" if first == series["points"][0]["value"] else ""
    return f"the fused graph beats NumPy from {first:,}{smallest}"
