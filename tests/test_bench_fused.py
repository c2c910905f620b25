"""The bench's GPU pieces: the two CUDA-graph engines, whole runs, and the targets' arithmetic.

Without a GPU (made explicit here, whatever the machine has) the engines say exactly why they
cannot run; the whole-run and target code is exercised on NumPy and on made-up figures.  On a
machine with a GPU, the gpu-marked test runs the fused graph.  Nothing here looks at how fast
anything is.
"""

from __future__ import annotations

import pytest
from test_bench import synthetic_like, tiny_config

from numpy_mnist.bench import markdown, run_bench
from numpy_mnist.bench.data import BenchData
from numpy_mnist.bench.engines import make_engines
from numpy_mnist.bench.machine import NO_GPU
from numpy_mnist.bench.sweep import crossover
from numpy_mnist.bench.targets import evaluate_targets
from numpy_mnist.bench.whole_runs import WholeRun, run_whole, run_whole_runs

TINY = ("--model", "linear", "--epochs", "2", "--train-rows", "300", "--valid-rows", "100")


def test_the_graph_engines_say_why_they_cannot_run_without_a_gpu(without_gpu, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    engines = {e.key: e for e in make_engines()}
    fused, torch_graph = engines["fused-graph"], engines["torch-cuda-graph"]
    assert fused.is_gpu and torch_graph.is_gpu
    assert (fused.framework, torch_graph.framework) == ("numpy-mnist", "torch")
    assert fused.label == "numpy-mnist fused CUDA graph" and torch_graph.label == "PyTorch CUDA-graph replay"
    expected = {"cupy not installed": "the cupy backend needs CuPy, which is not installed: ",
                "no CUDA device": "CuPy is installed but no CUDA GPU is usable (RuntimeError: cudaErrorNoDevice"}
    assert fused.unavailable().startswith(expected[without_gpu])
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    assert torch_graph.unavailable() == "torch sees no CUDA device"
    monkeypatch.setattr(torch.version, "cuda", None)
    assert torch_graph.unavailable() == "torch was built without CUDA"


@pytest.mark.gpu
def test_on_a_gpu_the_fused_graph_runs_and_its_targets_are_measured(cupy_backend):
    results = run_bench(tiny_config(engines=("numpy", "fused-graph")), log=lambda line: None)
    assert results["unavailable"] == {} and results["references"]["gpu"]["via"] == "cupy"
    targets = {t["key"]: t for t in results["targets"]}
    for key in ("fused_linear1_epoch", "fused_simple_net_epoch", "fused_linear1_vs_numpy", "fused_simple_net_vs_numpy"):
        assert targets[key]["measured"] > 0 and isinstance(targets[key]["met"], bool)


def _results(times_ms: dict, sweep=None, whole=None) -> dict:
    rows = [{"model": model, "engine": engine, "median_s": ms / 1e3} for (model, engine), ms in times_ms.items()]
    out = {"epochs": rows, "unavailable": {}, "references": {"cpu": {"stream": {"seconds": 1e-3}}}}
    if sweep is not None:
        out["sweep"] = sweep
    if whole is not None:
        out["whole_runs"] = whole
    return out


def test_the_gpu_targets_are_computed_from_the_epoch_table():
    times = {("linear1", "fused-graph"): 0.3, ("simple_net(30)", "fused-graph"): 0.9,
             ("linear1", "torch-cuda-graph"): 2.0, ("simple_net(30)", "torch-cuda-graph"): 4.0,
             ("linear1", "torch-cuda"): 30.0, ("simple_net(30)", "torch-cuda"): 45.0,
             ("linear1", "cupy"): 15.0, ("simple_net(30)", "cupy"): 9.0,
             ("linear1", "numpy"): 5.7, ("simple_net(30)", "numpy"): 15.5}
    targets = {t["key"]: t for t in evaluate_targets(_results(times))}
    assert targets["fused_linear1_epoch"]["measured"] == pytest.approx(0.3) and targets["fused_linear1_epoch"]["met"]
    assert targets["fused_simple_net_epoch"]["met"] is False  # 0.9 ms > 0.8 ms
    assert targets["fused_linear1_vs_torch_graph"]["measured"] == pytest.approx(2.0 / 0.3)
    assert targets["fused_simple_net_vs_torch_graph"]["met"] is False  # 4.4x < 5x
    assert targets["fused_linear1_vs_torch_eager"]["met"] and targets["fused_simple_net_vs_torch_eager"]["met"]
    assert targets["fused_linear1_vs_numpy"]["measured"] == pytest.approx(19.0)
    assert targets["gpu_linear1_vs_torch"]["measured"] == pytest.approx(2.0)
    cupy_linear1 = targets["gpu_linear1_vs_torch"]
    assert cupy_linear1["met"] is False and "launch overhead" in cupy_linear1["note"]
    assert targets["gpu_simple_net_vs_torch"]["met"] is True and targets["gpu_simple_net_vs_torch"]["note"] == ""
    assert targets["cpu_linear1_vs_stream"]["measured"] == pytest.approx(5.7)
    assert targets["cpu_linear1_vs_torch"]["note"] == "an engine it needs did not run: torch-cpu (not among --engines)"
    units = {"_epoch": "ms", "_memory": "GB"}
    assert all(t["unit"] == units.get(t["key"][t["key"].rfind("_"):], "x") for t in targets.values())
    assert targets["cpu_resnet18_memory"]["note"] == "the ResNet-18 rows were not run (--no-resnet)"
    assert targets["fused_crossover"]["note"].startswith("no sweep in this run: run with --sweep")


def test_the_crossovers_are_stated_per_sweep_axis():
    engines = make_engines(["numpy", "fused-graph"])

    def series(name, *points):
        points = [{"value": v, "engines": {"fused-graph": {"median_s": f}, "numpy": {"median_s": n}}}
                  for v, f, n in points]
        return {"name": name, "points": points, "crossover": crossover(points, engines)}

    sweep = {"engines": [e.describe() for e in engines], "series": [
        series("batch_size/linear1", (64, 1.0, 2.0), (256, 0.5, 3.0)),
        series("hidden/simple_net", (30, 2.0, 1.0), (256, 1.0, 1.5)),
        series("rows/linear1", (12_396, 2.0, 1.0)),
    ]}
    results = {**_results({}, sweep=sweep), "machine": {"gpu": {"name": "a GPU"}}}
    targets = {t["key"]: t for t in evaluate_targets(results)}
    assert targets["fused_crossover"]["met"] is True
    assert targets["fused_crossover"]["note"] == (
        "batch_size/linear1: the fused graph beats NumPy from 64 (the smallest size swept); "
        "hidden/simple_net: the fused graph beats NumPy from 256; "
        "rows/linear1: the fused graph never beats NumPy over this range")
    assert targets["gpu_crossover"]["met"] is True
    assert targets["gpu_crossover"]["note"].startswith("batch_size/linear1: the GPU first beats the CPU at 64; ")


def test_a_whole_run_is_the_command_line_with_its_history_timed():
    result = run_whole(TINY, "numpy")
    assert result["backend"] == "numpy" and result["epochs"] == 2
    assert 0 < result["training_s"] <= result["wall_s"] and 0 <= result["accuracy"] <= 1


def test_whole_runs_compare_two_backends_and_become_targets(monkeypatch):
    import numpy_mnist.bench.whole_runs as whole_runs

    runs = (WholeRun("tiny", TINY, 0.5),)
    # NumPy plays both backends here: the run with --backend cupy becomes one with --backend numpy
    monkeypatch.setattr(whole_runs, "get_backend", lambda name: None)
    monkeypatch.setattr(whole_runs, "run_whole", lambda argv, backend, run=run_whole: run(argv, "numpy"))
    out = run_whole_runs(runs, log=lambda line: None)
    assert set(out[0]["runs"]) == {"numpy", "cupy"} and out[0]["note"] == ""
    assert out[0]["speedup"] == out[0]["runs"]["numpy"]["training_s"] / out[0]["runs"]["cupy"]["training_s"]
    x, y = synthetic_like(260, seed=2)
    report = run_bench(tiny_config(engines=("numpy",), repeats=1, data=BenchData(x, y, "synthetic", real=False)),
                       log=lambda line: None)
    assert "| `numpy-mnist train --model linear" in markdown({**report, "whole_runs": out})
    fake = [{"key": "tiny", "command": "numpy-mnist train tiny", "goal": 15.0, "note": "", "speedup": 20.0,
             "runs": {"numpy": {"training_s": 2.0, "wall_s": 3.0, "accuracy": 0.98},
                      "cupy": {"training_s": 0.1, "wall_s": 1.5, "accuracy": 0.98}}}]
    target = {t["key"]: t for t in evaluate_targets(_results({}, whole=fake))}["whole_tiny"]
    assert target["measured"] == 20.0 and target["met"] is True and target["goal"] == ">= 15x"


def test_whole_runs_without_a_gpu_say_so(monkeypatch):
    from numpy_mnist.backends import BackendUnavailableError

    def no_gpu(name="numpy", dtype="float32"):
        raise BackendUnavailableError("CuPy is installed but no CUDA GPU is visible")

    monkeypatch.setattr("numpy_mnist.bench.whole_runs.get_backend", no_gpu)
    out = run_whole_runs(log=lambda line: None)
    assert [r["key"] for r in out] == ["book", "digits_mlp"]
    assert all(r["runs"] == {} and r["note"] == f"{NO_GPU} (CuPy is installed but no CUDA GPU is visible)" for r in out)
    targets = {t["key"]: t for t in evaluate_targets(_results({}, whole=out))}
    assert targets["whole_book"]["met"] is None and targets["whole_book"]["note"].startswith(NO_GPU)
    assert targets["whole_digits_mlp"]["goal"] == ">= 40x"
