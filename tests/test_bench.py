"""The benchmark runs and writes well-formed output.  No test here looks at how fast anything is."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from numpy_mnist.bench import BenchConfig, markdown, run_bench, write_results
from numpy_mnist.bench.data import BenchData, grow_rows, synthetic_like
from numpy_mnist.bench.engines import Workload, make_engines
from numpy_mnist.bench.machine import NO_GPU, machine_info, numpy_blas_threads
from numpy_mnist.bench.sweep import Series, crossover
from numpy_mnist.bench.timing import Trial, time_interleaved

TINY_SWEEP = (Series("batch_size", "linear1", (64, 128)), Series("hidden", "simple_net", (4, 8)),
              Series("rows", "linear1", (300, 450)))


def tiny_config(**changes) -> BenchConfig:
    x, y = synthetic_like(300, seed=1)
    settings = dict(quick=True, engines=("numpy", "torch-cpu", "cupy", "torch-cuda", "fused-graph", "torch-cuda-graph"),
                    whole_runs=False, warmups=1, repeats=2,
                    matmul_n_cpu=32, matmul_n_gpu=64, data=BenchData(x, y, "synthetic test data", real=False),
                    settle_s=0.0)
    settings.update(changes)
    return BenchConfig(**settings)


@pytest.fixture(scope="module")
def results():
    return run_bench(tiny_config(sweep=True, series=TINY_SWEEP, point_budget_s=0.01), log=lambda line: None)


def test_json_has_every_figure_and_the_machine(results):
    back = json.loads(json.dumps(results))  # JSON-ready as it is
    for key in ("schema", "created", "machine", "timing", "data", "engines", "unavailable", "references",
                "epochs", "targets", "sweep", "elapsed_s"):
        assert key in back
    m = back["machine"]
    assert m["cpu"] and m["cores"]["logical"] >= 1 and m["gpu"]["name"]
    for lib in ("python", "numpy", "numpy_blas", "torch", "cupy", "numpy_mnist"):
        assert isinstance(m["versions"][lib], str) and m["versions"][lib]
    assert m["numpy_blas_threads"]["threads"] >= 1
    assert "other_programs" in m and "load_average" in m
    stream = back["references"]["cpu"]["stream"]
    assert stream["bytes"] == 300 * 784 * 4 and stream["seconds"] > 0 and stream["best_method"] in stream["methods"]
    assert back["references"]["cpu"]["matmul"]["flop_per_s"] > 0


def test_epochs_cover_both_models_on_every_engine_that_ran(results):
    ran = [e["key"] for e in results["engines"] if e["key"] not in results["unavailable"]]
    assert "numpy" in ran
    assert {(r["model"], r["engine"]) for r in results["epochs"]} == {
        (m, k) for m in ("linear1", "simple_net(30)") for k in ran}
    for row in results["epochs"]:
        assert row["repeats"] == 2 and row["warmups"] == 1 and len(row["times_s"]) == 2
        assert row["median_s"] > 0 and row["x_stream"] > 0 and row["x_hardware_bound"] > 0
    numpy_rows = [r for r in results["epochs"] if r["engine"] == "numpy"]
    assert all("blas_floor" in r for r in numpy_rows)


def test_targets_are_reported_with_measured_ratios(results):
    targets = {t["key"]: t for t in results["targets"]}
    assert targets["cpu_linear1_vs_stream"]["measured"] > 0
    assert isinstance(targets["cpu_linear1_vs_stream"]["met"], bool)
    if "torch-cpu" not in results["unavailable"]:
        assert targets["cpu_linear1_vs_torch"]["measured"] > 0
    if results["machine"]["gpu"]["name"] == NO_GPU:
        assert targets["gpu_linear1_vs_torch"]["met"] is None
        assert targets["gpu_linear1_vs_torch"]["note"] == "no GPU found"
    assert "gpu_crossover" in targets


def test_sweep_has_every_point_on_every_engine(results):
    series = results["sweep"]["series"]
    assert [s["name"] for s in series] == [s.name for s in TINY_SWEEP]
    ran = {e["key"] for e in results["sweep"]["engines"]}
    for s, spec in zip(series, TINY_SWEEP):
        assert [p["value"] for p in s["points"]] == list(spec.values)
        for p in s["points"]:
            assert set(p["engines"]) == ran
            assert all(m["repeats"] >= 1 for m in p["engines"].values())
        assert s["crossover"]["statement"]
    rows = series[2]["points"]
    assert [p["rows"] for p in rows] == [300, 450]


def test_markdown_table_is_well_formed(results):
    text = markdown(results)
    assert text.startswith("# numpy-mnist benchmark")
    lines = text.splitlines()
    header = lines.index("| model | engine | epoch (ms) | speed-up vs PyTorch eager CPU | x streaming pass "
                         "| x hardware bound |")
    table = []
    for line in lines[header:]:
        if not line.startswith("|"):
            break
        table.append(line)
    assert len(table) == 2 + len(results["epochs"])
    assert all(line.count("|") == 7 for line in table)
    assert "## Targets (issue 5)" in text
    if results["machine"]["gpu"]["name"] == NO_GPU:
        assert "No GPU found" in text


def test_results_are_written_as_markdown_json_and_png(results, tmp_path):
    written = write_results(results, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == sorted(["bench.md", "bench.json", "epoch_times.png", "sweep_batch_size_linear1.png",
                            "sweep_hidden_simple_net.png", "sweep_rows_linear1.png"])
    for p in written:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["schema"] == 1
    assert (tmp_path / "out" / "bench.md").read_text() == markdown(results)


def test_without_torch_the_bench_runs_and_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" fail
    results = run_bench(tiny_config(engines=("numpy", "torch-cpu")), log=lambda line: None)
    assert results["unavailable"]["torch-cpu"] == "torch not installed"
    assert results["machine"]["versions"]["torch"] == "torch not installed"
    assert {r["engine"] for r in results["epochs"]} == {"numpy"}
    targets = {t["key"]: t for t in results["targets"]}
    assert targets["cpu_linear1_vs_torch"]["met"] is None
    assert "torch not installed" in targets["cpu_linear1_vs_torch"]["note"]
    assert "torch not installed" in markdown(results)


def test_a_target_whose_engine_was_not_selected_says_so():
    results = run_bench(tiny_config(engines=("numpy",)), log=lambda line: None)
    targets = {t["key"]: t for t in results["targets"]}
    assert targets["cpu_linear1_vs_torch"]["met"] is None
    assert targets["cpu_linear1_vs_torch"]["note"] == "an engine it needs did not run: torch-cpu (not among --engines)"
    assert targets["cpu_linear1_vs_stream"]["measured"] is not None


def test_cli_quick_prints_the_table_and_writes_files(tmp_path, capsys, monkeypatch):
    import numpy_mnist.bench.suite as suite
    from numpy_mnist.cli import main

    x, y = synthetic_like(260, seed=2)
    monkeypatch.setattr(suite, "training_data", lambda: BenchData(x, y, "synthetic test data", real=False))
    code = main(["bench", "--quick", "--engines", "numpy", "--repeats", "1", "--warmups", "1",
                 "--out", str(tmp_path), "--no-plot"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| linear1 | numpy-mnist NumPy |" in out and "| simple_net(30) | numpy-mnist NumPy |" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md"]


def test_cli_refuses_an_unknown_engine(capsys):
    from numpy_mnist.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--engines", "jax"])
    assert exc.value.code == 2


def test_unknown_engine_keys_are_refused():
    with pytest.raises(ValueError, match="unknown engine"):
        make_engines(["numpy", "tpu"])


def test_crossover_is_the_first_size_where_the_gpu_wins():
    engines = make_engines(["numpy", "torch-cpu", "cupy", "torch-cuda"])

    def point(value, cpu, gpu):
        return {"value": value, "engines": {"numpy": {"median_s": cpu}, "torch-cpu": {"median_s": cpu * 2},
                                            "cupy": {"median_s": gpu}, "torch-cuda": {"median_s": gpu * 3}}}

    found = crossover([point(64, 1.0, 2.0), point(128, 1.0, 1.5), point(256, 1.0, 0.5)], engines)
    assert found["value"] == 256 and found["numpy_mnist_value"] == 256 and "256" in found["statement"]
    never = crossover([point(64, 1.0, 2.0)], engines)
    assert never["value"] is None and "never" in never["statement"]
    cpu_only = [{"value": 64, "engines": {"numpy": {"median_s": 1.0}}}]
    assert "no GPU found" in crossover(cpu_only, engines)["statement"]


def test_interleaved_timing_counts_warmups_and_repeats():
    calls = []
    trials = {k: Trial(lambda k=k: calls.append(k)) for k in "ab"}
    timed = time_interleaved(trials, warmups=2, repeats=3)
    assert calls == ["a", "b"] * 5
    assert all(len(m.times_s) == 3 and m.warmups == 2 for m in timed.values())
    calls.clear()
    timed = time_interleaved(trials, warmups=1, repeats=50, budget_s=0.0, min_repeats=4)
    assert all(len(m.times_s) == 4 for m in timed.values())


def test_groups_take_turns_in_blocks_each_after_an_untimed_run():
    calls = []
    trials = {k: Trial(lambda k=k: calls.append(k)) for k in ("a1", "a2", "b1")}
    timed = time_interleaved(trials, warmups=1, repeats=5, group_of=lambda k: k[0], blocks=2, settle_s=0.0)
    assert [len(m.times_s) for m in timed.values()] == [5, 5, 5]
    # block 1: a (warm-up + 3 rounds), b (warm-up + 3); block 2: a (untimed + 2), b (untimed + 2)
    assert calls == ["a1", "a2"] * 4 + ["b1"] * 4 + ["a1", "a2"] * 3 + ["b1"] * 3


def test_workloads_and_data_helpers():
    assert Workload("linear1").flops(10) == 4 * 10 * 784
    assert Workload("simple_net", hidden=30).flops(1) == 4 * 784 * 30 + 6 * 30
    with pytest.raises(ValueError):
        Workload("resnet")
    x, y = synthetic_like(50)
    assert x.shape == (50, 784) and x.dtype == np.float32 and y.shape == (50, 1)
    assert 0 <= x.min() and x.max() <= 1 and set(np.unique(y)) <= {0.0, 1.0}
    data = BenchData(x, y, "t", real=True)
    grown = grow_rows(data, 120)
    assert grown.rows == 120 and not grown.real and grown.x.dtype == np.float32
    assert grow_rows(data, 20).rows == 20 and grow_rows(data, 20).real


def test_machine_info_names_the_gpu_or_says_none_was_found():
    info = machine_info()
    assert info["gpu"]["name"] == NO_GPU or info["gpu"].get("seen_by") in ("cupy", "torch")
    assert numpy_blas_threads()["threads"] >= 1


def test_the_engines_in_table_order():
    from numpy_mnist.bench.engines import make_engines

    assert [e.key for e in make_engines()] == ["numpy", "torch-cpu", "cupy", "torch-cuda", "fused-graph",
                                               "torch-cuda-graph"]
    with pytest.raises(ValueError, match="unknown engine"):
        make_engines(["cupy-graph"])  # the crashing capture of issue 10 is gone
