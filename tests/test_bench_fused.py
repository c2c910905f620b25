"""Issue 11's benchmark pieces: the two CUDA-graph engines, whole runs, and the targets' arithmetic.

On a machine without a GPU the engines say why they cannot run and every target says which engine
it is missing; the whole-run and target code is exercised here on NumPy and on made-up figures.
Nothing here looks at how fast anything is.
"""

from __future__ import annotations

import pytest

from numpy_mnist.bench import BenchConfig, markdown, run_bench
from numpy_mnist.bench.data import BenchData, synthetic_like
from numpy_mnist.bench.engines import make_engines
from numpy_mnist.bench.fused_targets import (
    WholeRun,
    evaluate_fused_targets,
    run_whole,
    run_whole_runs,
)
from numpy_mnist.bench.machine import NO_GPU

TINY = ("--model", "linear", "--epochs", "2", "--train-rows", "300", "--valid-rows", "100")


def test_the_graph_engines_are_there_by_default_and_say_why_they_cannot_run():
    engines = {e.key: e for e in make_engines()}
    fused, torch_graph = engines["fused-graph"], engines["torch-cuda-graph"]
    assert fused.is_gpu and torch_graph.is_gpu
    assert (fused.framework, torch_graph.framework) == ("numpy-mnist", "torch")
    assert fused.label == "numpy-mnist fused CUDA graph" and torch_graph.label == "PyTorch CUDA-graph replay"
    for engine in (fused, torch_graph):
        why = engine.unavailable()
        assert why is None or isinstance(why, str) and why


def test_a_cpu_run_reports_every_fused_target_with_its_missing_engine():
    x, y = synthetic_like(300, seed=1)
    results = run_bench(BenchConfig(quick=True, engines=("numpy", "fused-graph", "torch-cuda-graph"), warmups=1,
                                    repeats=1, matmul_n_cpu=32, matmul_n_gpu=64, settle_s=0.0, whole_runs=False,
                                    data=BenchData(x, y, "synthetic test data", real=False)), log=lambda line: None)
    if results["machine"]["gpu"]["name"] != NO_GPU:
        pytest.skip("a GPU is here: this test is about a machine without one")
    fused = [t for t in results["targets"] if t.get("issue") == 11]
    assert [t["key"] for t in fused][:2] == ["fused_linear1_epoch", "fused_simple_net_epoch"]
    for t in fused:
        assert t["met"] is None and t["measured"] is None and t["note"], t
    assert fused[0]["note"] == NO_GPU
    assert "no sweep in this run" in fused[-1]["note"]
    text = markdown(results)
    assert "## Targets (issue 11: the fused CUDA graph)" in text and "## Targets (issue 5)" in text


def _results(times_ms: dict, sweep=None, whole=None) -> dict:
    rows = [{"model": model, "engine": engine, "median_s": ms / 1e3}
            for (model, engine), ms in times_ms.items()]
    out = {"epochs": rows, "unavailable": {}}
    if sweep is not None:
        out["sweep"] = sweep
    if whole is not None:
        out["whole_runs"] = whole
    return out


def test_fused_targets_are_computed_from_the_epoch_table():
    times = {("linear1", "fused-graph"): 0.3, ("simple_net(30)", "fused-graph"): 0.9,
             ("linear1", "torch-cuda-graph"): 2.0, ("simple_net(30)", "torch-cuda-graph"): 4.0,
             ("linear1", "torch-cuda"): 30.0, ("simple_net(30)", "torch-cuda"): 45.0,
             ("linear1", "numpy"): 5.7, ("simple_net(30)", "numpy"): 15.5}
    targets = {t["key"]: t for t in evaluate_fused_targets(_results(times))}
    assert targets["fused_linear1_epoch"]["measured"] == pytest.approx(0.3) and targets["fused_linear1_epoch"]["met"]
    assert targets["fused_simple_net_epoch"]["met"] is False  # 0.9 ms > 0.8 ms
    assert targets["fused_linear1_vs_torch_graph"]["measured"] == pytest.approx(2.0 / 0.3)
    assert targets["fused_simple_net_vs_torch_graph"]["met"] is False  # 4.4x < 5x
    assert targets["fused_linear1_vs_torch_eager"]["met"] and targets["fused_simple_net_vs_torch_eager"]["met"]
    assert targets["fused_linear1_vs_numpy"]["measured"] == pytest.approx(19.0)
    assert all(t["unit"] == ("ms" if t["key"].endswith("_epoch") else "x") for t in targets.values())


def test_the_crossover_is_stated_per_sweep_axis():
    def point(value, fused, numpy):
        return {"value": value, "engines": {"fused-graph": {"median_s": fused}, "numpy": {"median_s": numpy}}}

    sweep = {"series": [
        {"name": "batch_size/linear1", "points": [point(64, 1.0, 2.0), point(256, 0.5, 3.0)]},
        {"name": "hidden/simple_net", "points": [point(30, 2.0, 1.0), point(256, 1.0, 1.5)]},
        {"name": "rows/linear1", "points": [point(12_396, 2.0, 1.0)]},
    ]}
    target = {t["key"]: t for t in evaluate_fused_targets(_results({}, sweep=sweep))}["fused_crossover"]
    assert target["met"] is True
    assert target["note"] == ("batch_size/linear1: the fused graph beats NumPy from 64 (the smallest size swept); "
                              "hidden/simple_net: the fused graph beats NumPy from 256; "
                              "rows/linear1: the fused graph never beats NumPy over this range")


def _minimal_report() -> dict:
    x, y = synthetic_like(260, seed=2)
    return run_bench(BenchConfig(quick=True, engines=("numpy",), warmups=1, repeats=1, matmul_n_cpu=32,
                                 settle_s=0.0, whole_runs=False, data=BenchData(x, y, "synthetic", real=False)),
                     log=lambda line: None)


def test_a_whole_run_is_the_command_line_with_its_history_timed():
    result = run_whole(TINY, "numpy")
    assert result["backend"] == "numpy" and result["epochs"] == 2
    assert 0 < result["training_s"] <= result["wall_s"] and 0 <= result["accuracy"] <= 1


def test_whole_runs_compare_two_backends_and_become_targets():
    runs = (WholeRun("tiny", TINY, 0.5),)
    out = run_whole_runs(runs, log=lambda line: None, backends={"numpy": "numpy", "cupy": "numpy"})
    assert set(out[0]["runs"]) == {"numpy", "cupy"} and out[0]["note"] == ""
    assert out[0]["speedup"] == out[0]["runs"]["numpy"]["training_s"] / out[0]["runs"]["cupy"]["training_s"]
    assert "| `numpy-mnist train --model linear" in markdown({**_minimal_report(), "whole_runs": out})
    fake = [{"key": "tiny", "command": "numpy-mnist train tiny", "goal": 15.0, "note": "", "speedup": 20.0,
             "runs": {"numpy": {"training_s": 2.0, "wall_s": 3.0, "accuracy": 0.98},
                      "cupy": {"training_s": 0.1, "wall_s": 1.5, "accuracy": 0.98}}}]
    target = {t["key"]: t for t in evaluate_fused_targets(_results({}, whole=fake))}["whole_tiny"]
    assert target["measured"] == 20.0 and target["met"] is True and target["goal"] == ">= 15x"


def test_whole_runs_without_a_gpu_say_so(monkeypatch):
    from backends import BackendUnavailableError

    def no_gpu(name="numpy", dtype="float32"):
        raise BackendUnavailableError("CuPy is installed but no CUDA GPU is visible")

    monkeypatch.setattr("backends.get_backend", no_gpu)
    out = run_whole_runs(log=lambda line: None)
    assert [r["key"] for r in out] == ["book", "digits_mlp"]
    assert all(r["runs"] == {} and r["note"].startswith(NO_GPU) and "no CUDA GPU is visible" in r["note"] for r in out)
    targets = {t["key"]: t for t in evaluate_fused_targets(_results({}, whole=out))}
    assert targets["whole_book"]["met"] is None and targets["whole_book"]["note"].startswith(NO_GPU)
    assert targets["whole_digits_mlp"]["goal"] == ">= 40x"
