"""Issue 11's targets: the fused CUDA graph against PyTorch's best, against the CPU, and whole runs.

Per-epoch figures come from the run's epoch table (engines ``fused-graph``, ``torch-cuda-graph``,
``torch-cuda`` and ``numpy``); the crossover per sweep axis from its sweep (``--sweep``).  Whole runs
are ``numpy-mnist train`` itself, run through its command line on NumPy and then on CuPy (which
trains through the fused graph by default), each reading its training time as the sum of the
history's per-epoch seconds (training and validation, as the table prints them; start-up,
data loading and kernel compilation are not part of it, and are reported beside it as wall time).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from numpy_mnist.bench.machine import NO_GPU

__all__ = ["FUSED_TARGETS", "WHOLE_RUNS", "WholeRun", "evaluate_fused_targets", "run_whole", "run_whole_runs"]


@dataclass(frozen=True)
class WholeRun:
    """A ``numpy-mnist train`` command timed on NumPy and on CuPy; ``goal``: NumPy's time / CuPy's."""

    key: str
    argv: tuple[str, ...]
    goal: float

    @property
    def command(self) -> str:
        return " ".join(("numpy-mnist train", *self.argv)) + ("" if self.argv else " (the book's defaults)")


WHOLE_RUNS = (
    WholeRun("book", (), 15.0),
    WholeRun("digits_mlp", ("--dataset", "mnist", "--model", "simple_net", "--hidden", "100", "--epochs", "20"), 40.0),
)


def run_whole(argv, backend: str, extra=()) -> dict:
    """Run ``numpy-mnist train argv --backend backend`` (quiet, no plots, into a temporary folder).

    Returns its training time (the history's seconds summed), its wall time, epochs and final
    accuracy.  A user error (missing MNIST files, ...) propagates as the CLI's exception.
    """
    from numpy_mnist.cli import build_parser

    with tempfile.TemporaryDirectory() as out:
        args = build_parser().parse_args(["train", *argv, "--backend", backend, "--quiet", "--no-plot",
                                          "--out", out, *extra])
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            code = args.run(args)
        wall = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"numpy-mnist train {' '.join(argv)} --backend {backend} exited with {code}")
        history = json.loads((Path(out) / "history.json").read_text())["epochs"]
    return {"backend": backend, "training_s": sum(r["seconds"] for r in history), "wall_s": wall,
            "epochs": len(history), "accuracy": history[-1]["accuracy"]}


def run_whole_runs(runs=WHOLE_RUNS, *, log=print, extra=(), backends=None) -> list[dict]:
    """Every whole run on NumPy, then on CuPy (skipped, with the reason, where CuPy has no GPU).

    ``backends`` maps the two roles, ``"numpy"`` and ``"cupy"``, to the backends that play them
    (tests let NumPy play both).
    """
    from backends import get_backend
    from numpy_mnist.errors import USER_ERRORS, BackendUnavailableError

    backends = backends or {"numpy": "numpy", "cupy": "cupy"}
    why_not = None
    try:
        get_backend(backends["cupy"])
    except BackendUnavailableError as exc:
        why_not = f"{NO_GPU} ({exc})" if "not installed" not in str(exc) else NO_GPU
    out = []
    for run in runs:
        entry = {"key": run.key, "command": run.command, "goal": run.goal, "runs": {}, "note": ""}
        if why_not is not None:
            entry["note"] = why_not
            out.append(entry)
            continue
        try:
            for role in ("numpy", "cupy"):
                log(f"whole run: {run.command} --backend {backends[role]}")
                entry["runs"][role] = run_whole(run.argv, backends[role], extra)
        except USER_ERRORS as exc:  # the CLI's own one-line errors, backend errors among them
            entry["note"] = str(exc)
        if len(entry["runs"]) == 2:
            entry["speedup"] = entry["runs"]["numpy"]["training_s"] / entry["runs"]["cupy"]["training_s"]
        out.append(entry)
    return out


# (key, what, goal text, unit, check)
FUSED_TARGETS = (
    ("fused_linear1_epoch", "GPU: linear1 epoch, numpy-mnist fused CUDA graph", "<= 0.4 ms", "ms",
     lambda v: v <= 0.4),
    ("fused_simple_net_epoch", "GPU: simple_net(30) epoch, numpy-mnist fused CUDA graph", "<= 0.8 ms", "ms",
     lambda v: v <= 0.8),
    ("fused_linear1_vs_torch_graph", "GPU: linear1 epoch, PyTorch CUDA-graph replay / fused graph", ">= 5x", "x",
     lambda v: v >= 5),
    ("fused_simple_net_vs_torch_graph", "GPU: simple_net epoch, PyTorch CUDA-graph replay / fused graph", ">= 5x",
     "x", lambda v: v >= 5),
    ("fused_linear1_vs_torch_eager", "GPU: linear1 epoch, PyTorch CUDA eager / fused graph", ">= 40x", "x",
     lambda v: v >= 40),
    ("fused_simple_net_vs_torch_eager", "GPU: simple_net epoch, PyTorch CUDA eager / fused graph", ">= 40x", "x",
     lambda v: v >= 40),
    ("fused_linear1_vs_numpy", "GPU beats CPU: linear1 epoch, numpy-mnist NumPy / fused graph", "> 1x", "x",
     lambda v: v > 1),
    ("fused_simple_net_vs_numpy", "GPU beats CPU: simple_net epoch, numpy-mnist NumPy / fused graph", "> 1x", "x",
     lambda v: v > 1),
)


def _epoch(results, model, engine):
    for row in results["epochs"]:
        if row["model"] == model and row["engine"] == engine:
            return row["median_s"]
    return None


def _why_missing(results, engines) -> str:
    ran = {row["engine"] for row in results["epochs"]}
    missing = [e for e in engines if e not in ran]
    if results.get("machine", {}).get("gpu", {}).get("name") == NO_GPU and any(e != "numpy" for e in missing):
        return NO_GPU
    return "an engine it needs did not run: " + ", ".join(
        f"{e} ({results['unavailable'].get(e, 'not among --engines')})" for e in missing)


def evaluate_fused_targets(results: dict) -> list[dict]:
    """Issue 11's targets against this run's figures (each with ``"issue": 11`` and its unit)."""
    def ratio(model, slow, fast):
        a, b = _epoch(results, model, slow), _epoch(results, model, fast)
        return (a / b if a and b else None), (slow, fast)

    def ms(model):
        t = _epoch(results, model, "fused-graph")
        return (t * 1e3 if t else None), ("fused-graph",)

    measured = {
        "fused_linear1_epoch": ms("linear1"),
        "fused_simple_net_epoch": ms("simple_net(30)"),
        "fused_linear1_vs_torch_graph": ratio("linear1", "torch-cuda-graph", "fused-graph"),
        "fused_simple_net_vs_torch_graph": ratio("simple_net(30)", "torch-cuda-graph", "fused-graph"),
        "fused_linear1_vs_torch_eager": ratio("linear1", "torch-cuda", "fused-graph"),
        "fused_simple_net_vs_torch_eager": ratio("simple_net(30)", "torch-cuda", "fused-graph"),
        "fused_linear1_vs_numpy": ratio("linear1", "numpy", "fused-graph"),
        "fused_simple_net_vs_numpy": ratio("simple_net(30)", "numpy", "fused-graph"),
    }
    out = []
    for key, what, goal, unit, check in FUSED_TARGETS:
        value, engines = measured[key]
        entry = {"key": key, "what": what, "goal": goal, "unit": unit, "issue": 11, "measured": value,
                 "met": None if value is None else bool(check(value)),
                 "note": "" if value is not None else _why_missing(results, engines)}
        out.append(entry)
    for run in results.get("whole_runs", []):
        value = run.get("speedup")
        out.append({"key": f"whole_{run['key']}", "what": f"whole run, {run['command']}: NumPy training time / "
                    "CuPy (fused graph) training time", "goal": f">= {run['goal']:g}x", "unit": "x", "issue": 11,
                    "measured": value, "met": None if value is None else bool(value >= run["goal"]),
                    "note": run["note"]})
    out.append(_crossover_target(results))
    return out


def _crossover_target(results: dict) -> dict:
    entry = {"key": "fused_crossover", "what": "GPU (fused graph) against CPU (numpy-mnist NumPy), per sweep axis",
             "goal": "stated", "unit": "x", "issue": 11, "measured": None, "met": None}
    sweep = results.get("sweep")
    if sweep is None:
        entry["note"] = "no sweep in this run: run with --sweep to state the crossover per axis"
        return entry
    statements, ran = [], False
    for s in sweep["series"]:
        first = None
        for p in s["points"]:
            e = p["engines"]
            if "fused-graph" in e and "numpy" in e:
                ran = True
                if e["fused-graph"]["median_s"] < e["numpy"]["median_s"]:
                    first = p["value"]
                    break
        where = ("the fused graph never beats NumPy over this range" if first is None else
                 f"the fused graph beats NumPy from {first:,}" + (" (the smallest size swept)"
                                                                  if first == s["points"][0]["value"] else ""))
        statements.append(f"{s['name']}: {where}")
    if not ran:
        entry["note"] = _why_missing(results, ("fused-graph", "numpy"))
        return entry
    entry["note"], entry["met"] = "; ".join(statements), True
    return entry
