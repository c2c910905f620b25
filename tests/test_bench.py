"""The benchmark runs and writes well-formed output.  No test here looks at how fast anything is.

The run these tests read is made without a GPU, explicitly (CuPy made unimportable and PyTorch told
it has no CUDA device), so every assertion holds, and means the same, on a machine with a GPU.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from numpy_mnist.bench import BenchConfig, markdown, run_bench, write_results
from numpy_mnist.bench.data import BenchData, grow_rows
from numpy_mnist.bench.engines import ENGINE_KEYS, Workload, make_engines
from numpy_mnist.bench.machine import NO_GPU, machine_info, numpy_blas_threads
from numpy_mnist.bench.references import floor_products
from numpy_mnist.bench.sweep import Series, crossover
from numpy_mnist.bench.timing import Trial, time_interleaved

TINY_SWEEP = (Series("batch_size", "linear1", (64, 128)), Series("hidden", "simple_net", (4, 8)),
              Series("rows", "linear1", (300, 450)))
ROOT = Path(__file__).resolve().parents[1]


def synthetic_like(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images (N, 784) float32 on MNIST's pixel grid of k/255, and 0/1 targets (N, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(rows, 784), dtype=np.uint8).astype(np.float32) / np.float32(255)
    return x, (rng.random((rows, 1)) < 0.5).astype(np.float32)


def tiny_config(**changes) -> BenchConfig:
    x, y = synthetic_like(300, seed=1)
    settings = dict(quick=True, whole_runs=False, warmups=1, repeats=2, matmul_n_cpu=32, matmul_n_gpu=64,
                    data=BenchData(x, y, "synthetic test data", real=False), settle_s=0.0, resnet_width=2,
                    resnet_batches=1)
    settings.update(changes)
    return BenchConfig(**settings)


def hide_the_gpu(monkeypatch) -> None:
    """This machine as one without a GPU: ``import cupy`` fails and PyTorch sees no CUDA device."""
    import torch

    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def results():
    with pytest.MonkeyPatch.context() as monkeypatch:
        hide_the_gpu(monkeypatch)
        return run_bench(tiny_config(sweep=True, series=TINY_SWEEP, point_budget_s=0.01, whole_runs=True),
                         log=lambda line: None)


def test_json_has_every_figure_and_the_machine(results):
    back = json.loads(json.dumps(results))  # JSON-ready as it is
    for key in ("schema", "created", "machine", "timing", "data", "engines", "unavailable", "references",
                "epochs", "resnet18", "targets", "sweep", "whole_runs", "elapsed_s"):
        assert key in back
    m = back["machine"]
    assert m["cpu"] and m["cores"]["logical"] >= 1 and m["gpu"]["name"] == NO_GPU
    for lib in ("python", "numpy", "numpy_blas", "torch", "cupy", "numpy_mnist"):
        assert isinstance(m["versions"][lib], str) and m["versions"][lib]
    assert m["versions"]["cupy"] == "cupy not installed"
    assert m["numpy_blas_threads"]["threads"] >= 1 and m["numpy_blas_threads"]["how"].startswith("threadpoolctl")
    assert set(m["other_programs"]["load_average"]) == {"start", "end"}
    stream = back["references"]["cpu"]["stream"]
    assert stream["bytes"] == 300 * 784 * 4 and stream["seconds"] > 0 and stream["best_method"] in stream["methods"]
    assert back["references"]["cpu"]["matmul"]["flop_per_s"] > 0
    assert "gpu" not in back["references"]


def test_epochs_cover_both_models_on_every_cpu_engine(results):
    assert set(results["unavailable"]) == {"cupy", "torch-cuda", "fused-graph", "torch-cuda-graph"}
    assert {(r["model"], r["engine"]) for r in results["epochs"]} == {
        (m, k) for m in ("linear1", "simple_net(30)", "resnet18") for k in ("numpy", "torch-cpu")}
    for row in results["epochs"]:
        assert row["repeats"] == 2 and len(row["times_s"]) == 2
        assert row["warmups"] == 1
        assert row["median_s"] > 0 and row["x_stream"] > 0 and row["x_hardware_bound"] > 0
        assert ("blas_floor" in row) == (row["engine"] == "numpy")


def test_the_resnet_rows_say_how_they_were_timed_and_what_memory_the_numpy_epoch_took(results):
    facts = results["resnet18"]
    assert (facts["width"], facts["batch_size"], facts["epoch_batches"], facts["batches_timed"]) == (2, 64, 4, 1)
    memory = facts["peak_memory"]
    assert memory["bytes"] == memory["traced_bytes"] + memory["data_bytes"] + 300 * 4 and memory["traced_bytes"] > 0
    assert memory["process_max_rss_bytes"] > memory["traced_bytes"]
    text = markdown(results)
    assert "ResNet-18 (width 2): batch 64, 4 batches, the last partial one dropped" in text
    assert "timed on the first 1 of its 4 batches, scaled to the epoch" in text
    assert markdown({**results, "resnet18": {**facts, "batches_timed": 4}}).count("timed on whole epochs") == 1

def test_every_target_is_reported_and_the_gpu_ones_say_no_gpu_was_found(results):
    targets = {t["key"]: t for t in results["targets"]}
    cpu = ("cpu_linear1_vs_torch", "cpu_simple_net_vs_torch", "cpu_linear1_vs_stream", "cpu_resnet18_vs_torch",
           "cpu_resnet18_vs_floor")
    assert list(targets)[:len(cpu)] == list(cpu)
    for key in (*cpu, "cpu_resnet18_memory"):
        assert targets[key]["measured"] > 0 and isinstance(targets[key]["met"], bool)
    for key in cpu[:3] + cpu[4:]:  # an unmet CPU goal says why, a met one nothing
        assert (targets[key]["note"] == "") == targets[key]["met"]
    assert targets["cpu_linear1_vs_torch"]["floor"] == 2.2 and targets["cpu_simple_net_vs_torch"]["floor"] == 1.6
    resnet = [r for r in results["epochs"] if r["model"] == "resnet18"]
    times = {r["engine"]: r["median_s"] for r in resnet}
    assert targets["cpu_resnet18_vs_torch"]["measured"] == times["torch-cpu"] / times["numpy"]
    assert targets["cpu_resnet18_vs_torch"]["stretch"] == 1.3
    assert targets["cpu_resnet18_vs_floor"]["measured"] == times["numpy"] / resnet[0]["blas_floor"]["median_s"]
    memory = targets["cpu_resnet18_memory"]
    assert (memory["measured"], memory["unit"], memory["goal"]) == (results["resnet18"]["peak_memory"]["bytes"] / 1e9,
                                                                    "GB", "< 2 GB")
    gpu = [t for t in results["targets"] if not t["key"].startswith("cpu_")]
    assert len(gpu) == 12 + 2 + 2  # twelve epoch targets (two of the ResNet-18), two whole runs, two crossovers
    assert {"gpu_resnet18_vs_numpy", "gpu_resnet18_vs_torch"} <= {t["key"] for t in gpu}
    for t in gpu:
        assert t["met"] is None and t["measured"] is None and t["note"].startswith(NO_GPU), t


def test_sweep_has_every_point_on_every_engine(results):
    series = results["sweep"]["series"]
    assert [s["name"] for s in series] == [s.name for s in TINY_SWEEP]
    assert {e["key"] for e in results["sweep"]["engines"]} == {"numpy", "torch-cpu"}
    for s, spec in zip(series, TINY_SWEEP):
        assert [p["value"] for p in s["points"]] == list(spec.values)
        for p in s["points"]:
            assert set(p["engines"]) == {"numpy", "torch-cpu"}
            assert all(m["repeats"] >= 1 for m in p["engines"].values())
        assert s["crossover"]["statement"].startswith(NO_GPU)
    assert [p["rows"] for p in series[2]["points"]] == [300, 450]


def test_markdown_is_well_formed_and_names_targets_by_what_they_are(results):
    text = markdown(results)
    assert text.startswith("# numpy-mnist benchmark") and "No GPU found" in text
    epochs = _table(text, "| model | engine | epoch (ms) | speed-up vs PyTorch eager CPU | x streaming pass "
                          "| x hardware bound |")
    assert len(epochs) == 2 + len(results["epochs"]) and all(line.count("|") == 7 for line in epochs)
    goals = _table(text, "| goal | wanted | this run | met? |")
    measured = [t for t in results["targets"] if t["measured"] is not None]
    assert len(goals) == 2 + len(measured) == 2 + 6
    assert goals[2].startswith("| CPU: linear1 epoch against PyTorch eager | >= 4x (floor 2.2x) |")
    assert goals[5].startswith("| CPU: ResNet-18 epoch against PyTorch eager | >= 1x (stretch 1.3x) |")
    assert goals[7].startswith("| CPU: ResNet-18 peak memory of the NumPy epoch at batch 64 | < 2 GB | 0.")
    assert all(re.search(r"\| (met(, the stretch too|, not the stretch)?|not met(\W.*)?) \|$", row)
               for row in goals[2:]), goals
    gpu = len(results["targets"]) - len(measured)
    assert f"- GPU goals: not measured, no GPU found ({gpu} goals)." in text.splitlines()
    assert "## Targets" not in text and "no GPU found |" not in text.split("## Goals")[1].split("## ")[0]
    assert not re.search(r"\bno\b, |below the floor|\*\*", text.split("## Goals")[1].split("## ")[0])
    assert not re.search(r"issue\s*#?\d", text, re.IGNORECASE)


def _table(text: str, header: str) -> list[str]:
    """The Markdown table that starts with ``header``: its lines up to the first that is not a row."""
    lines = text.splitlines()[text.splitlines().index(header):]
    return lines[:next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]


def test_an_unmet_goal_says_why_and_whether_the_floor_holds(results):
    from numpy_mnist.bench.report import _met

    slow = {**results["targets"][0], "measured": 2.5, "met": False, "floor_held": True, "note": "why"}
    assert _met(slow) == "not met (at or above the 2.2x floor): why"
    assert _met({**slow, "floor_held": False}) == "not met (under the 2.2x floor): why"
    assert _met({**slow, "met": True}) == "met"
    assert _met({**slow, "goal": "stated", "met": True}) == "stated"
    assert _met({**slow, "met": True, "stretch_held": False}) == "met, not the stretch"
    assert _met({**slow, "met": True, "stretch_held": True}) == "met, the stretch too"


def test_goals_not_measured_for_another_reason_get_a_line_each(results):
    targets = [{**t, "note": "an engine it needs did not run: torch-cpu (not among --engines)", "measured": None,
                "met": None} if t["key"] == "cpu_linear1_vs_torch" else t for t in results["targets"]]
    text = markdown({**results, "targets": targets})
    assert ("- CPU: linear1 epoch against PyTorch eager: not measured: an engine it needs did not run: torch-cpu "
            "(not among --engines).") in text.splitlines()
    assert len(_table(text, "| goal | wanted | this run | met? |")) == 2 + 5


def test_results_are_written_as_markdown_json_and_png(results, tmp_path):
    written = write_results(results, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(["bench.md", "bench.json", "epoch_times.png",
                                                      "sweep_batch_size_linear1.png", "sweep_hidden_simple_net.png",
                                                      "sweep_rows_linear1.png"])
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
    assert targets["cpu_linear1_vs_torch"]["note"] == "an engine it needs did not run: torch-cpu (torch not installed)"
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
                 "--out", str(tmp_path), "--no-plot", "--no-whole-runs", "--no-resnet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| linear1 | numpy-mnist NumPy |" in out and "| simple_net(30) | numpy-mnist NumPy |" in out
    assert "| CPU: linear1 epoch in streaming passes over the training data | <= 2x |" in out
    assert "- CPU: linear1 epoch against PyTorch eager: not measured: an engine it needs did not run" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md"]
    assert "| resnet18 |" not in out and "- CPU: ResNet-18 epoch over its convolutions' matrix products alone: not " \
        "measured: the ResNet-18 rows were not run (--no-resnet)." in out


def test_cli_options_reach_the_config(monkeypatch, capsys):
    import numpy_mnist.cli.bench as cli
    from numpy_mnist.cli import main

    seen = []

    def fake_run(config, log):
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "run_bench", fake_run)
    for argv in (["--quick", "--resnet-batches", "5"], ["--no-resnet", "--no-whole-runs"]):
        with pytest.raises(SystemExit):
            main(["bench", *argv])
    assert (seen[0].quick, seen[0].resnet, seen[0].resnet_batches, seen[0].whole_runs) == (True, True, 5, True)
    assert (seen[1].resnet, seen[1].whole_runs) == (False, False)
    assert BenchConfig(quick=True).resolved().resnet_batches == 12 and BenchConfig().resolved().resnet_batches is None


def test_cli_refuses_an_unknown_engine(capsys):
    from numpy_mnist.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--engines", "jax"])
    assert exc.value.code == 2


def test_the_engines_in_table_order_and_unknown_ones_refused():
    assert [e.key for e in make_engines()] == list(ENGINE_KEYS) == ["numpy", "torch-cpu", "cupy", "torch-cuda",
                                                                   "fused-graph", "torch-cuda-graph"]
    assert [e.key for e in make_engines(["torch-cpu", "numpy"])] == ["numpy", "torch-cpu"]
    with pytest.raises(ValueError, match="unknown engine"):
        make_engines(["numpy", "tpu"])


def test_crossover_is_the_first_size_where_the_gpu_wins():
    engines = make_engines(["numpy", "torch-cpu", "cupy", "torch-cuda", "fused-graph"])

    def point(value, cpu, gpu):
        return {"value": value, "engines": {"numpy": {"median_s": cpu}, "torch-cpu": {"median_s": cpu * 2},
                                            "cupy": {"median_s": gpu}, "torch-cuda": {"median_s": gpu * 3},
                                            "fused-graph": {"median_s": gpu * 1.5}}}

    found = crossover([point(64, 1.0, 2.0), point(128, 1.0, 1.5), point(256, 1.0, 0.5)], engines)
    assert (found["value"], found["numpy_mnist_value"], found["fused_value"]) == (256, 256, 256)
    assert found["statement"] == ("the GPU first beats the CPU at 256; "
                                  "numpy-mnist on CuPy first beats numpy-mnist on NumPy at 256")
    never = crossover([point(64, 1.0, 2.0)], engines)
    assert never["value"] is None and never["statement"] == "the GPU never beats the CPU over this range"
    cpu_only = [{"value": 64, "engines": {"numpy": {"median_s": 1.0}}}]
    assert crossover(cpu_only, engines)["statement"].startswith(NO_GPU)


def test_interleaved_timing_counts_warmups_and_repeats():
    calls = []
    trials = {k: Trial(lambda k=k: calls.append(k)) for k in "ab"}
    timed = time_interleaved(trials, warmups=2, repeats=3)
    assert calls == ["a", "b"] * 5
    assert all(len(m.times_s) == 3 and m.warmups == 2 for m in timed.values())
    timed = time_interleaved(trials, warmups=1, repeats=50, budget_s=0.0, min_repeats=4)
    assert all(len(m.times_s) == 4 for m in timed.values())


def test_groups_take_turns_in_blocks_each_after_an_untimed_run():
    calls = []
    trials = {k: Trial(lambda k=k: calls.append(k)) for k in ("a1", "a2", "b1")}
    timed = time_interleaved(trials, warmups=1, repeats=5, group_of=lambda k: k[0], blocks=2, settle_s=0.0)
    assert [len(m.times_s) for m in timed.values()] == [5, 5, 5]
    # block 1: a (warm-up + 3 rounds), b (warm-up + 3); block 2: a (untimed + 2), b (untimed + 2)
    assert calls == ["a1", "a2"] * 4 + ["b1"] * 4 + ["a1", "a2"] * 3 + ["b1"] * 3


def test_a_group_with_fewer_rounds_than_blocks_sits_out_the_last_turns():
    calls = []
    trials = {k: Trial(lambda k=k: calls.append(k)) for k in ("a", "b")}
    time_interleaved(trials, warmups=1, repeats=1, group_of=lambda k: k, blocks=3, settle_s=0.0)
    assert calls == ["a", "a", "b", "b"]  # one warm-up and one timed round each, no later turns


def test_measurement_summary():
    from numpy_mnist.bench.timing import Measurement

    m = Measurement([4.0, 1.0, 3.0, 2.0, 5.0], warmups=2).as_dict()
    assert (m["median_s"], m["min_s"], m["q1_s"], m["q3_s"], m["repeats"]) == (3.0, 1.0, 2.0, 4.0, 5)
    assert Measurement([2.0]).as_dict()["q1_s"] == 2.0


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


@pytest.mark.parametrize("workload", [Workload("linear1", batch_size=64), Workload("resnet18", batch_size=64, width=2),
                                      Workload("simple_net", hidden=7, batch_size=64)])
def test_the_blas_floor_runs_every_product_the_flops_count_and_nothing_else(workload):
    """Its products' FLOPs (2 per multiply-add) are the epoch's: none left out, none added."""
    x, _ = synthetic_like(150)  # two full batches and a partial one
    products = floor_products(workload, x)
    assert all(left.shape[1] == right.shape[0] for left, right in products)
    assert sum(2.0 * left.shape[0] * left.shape[1] * right.shape[1] for left, right in products) == workload.flops(150)


def test_machine_facts_come_from_threadpoolctl(monkeypatch):
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    blas = [i for i in blas if "numpy" in i["filepath"]] or blas
    assert numpy_blas_threads() == {"threads": blas[0]["num_threads"],
                                    "how": f"threadpoolctl ({blas[0]['internal_api']})"}
    hide_the_gpu(monkeypatch)
    info = machine_info()
    assert info["versions"]["numpy_blas"] == f"{blas[0]['internal_api']} {blas[0]['version']}"
    assert info["gpu"]["name"] == NO_GPU
    assert info["gpu"]["why"][0].startswith("cupy: the cupy backend needs CuPy, which is not installed")
    assert info["gpu"]["why"][1].startswith("torch: ")


def test_the_bench_imports_without_a_cycle_and_every_function_is_used():
    """Each bench module imports only modules listed before it; every top-level function is used somewhere."""
    order = ["timing", "machine", "data", "resnet", "engines", "references", "sweep", "whole_runs", "targets",
             "report", "suite"]
    folder = ROOT / "numpy_mnist" / "bench"
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(order + ["__init__"])
    trees = {p.stem: ast.parse(p.read_text()) for p in folder.glob("*.py")}
    trees["cli"] = ast.parse((ROOT / "numpy_mnist" / "cli" / "bench.py").read_text())
    used = {n.id for t in trees.values() for n in ast.walk(t) if isinstance(n, ast.Name)}
    used |= {n.attr for t in trees.values() for n in ast.walk(t) if isinstance(n, ast.Attribute)}
    for i, name in enumerate(order):
        imported = {n.module.rsplit(".", 1)[-1] for n in ast.walk(trees[name])
                    if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("numpy_mnist.bench.")}
        assert imported <= set(order[:i]), (name, imported - set(order[:i]))
        unused = [n.name for n in trees[name].body if isinstance(n, ast.FunctionDef) and n.name not in used]
        assert unused == [], f"{name}: defined and never used: {unused}"


def test_no_issue_numbers_in_the_bench_or_its_results():
    paths = [*(ROOT / "numpy_mnist" / "bench").glob("*.py"), ROOT / "numpy_mnist" / "cli" / "bench.py",
             *(ROOT / "benchmarks").rglob("*.md"), *(ROOT / "benchmarks").glob("*.py")]
    found = [f"{p}: {m.group(0)}" for p in paths for m in re.finditer(r"issue\s*#?\d+", p.read_text(), re.I)]
    assert found == []


def test_an_event_trial_reads_the_device_clock_around_the_work():
    calls = []

    class Event:
        def record(self):
            calls.append("record")

        def synchronize(self):
            calls.append("wait for the end")

    trial = Trial(lambda: calls.append("run"), lambda: calls.append("synchronize"), warm=lambda: calls.append("warm"),
                  events=(Event, lambda start, end: 0.25))
    assert trial.timed() == 0.25
    assert calls == ["synchronize", "record", "run", "record", "wait for the end"]
    calls.clear()
    assert trial.timed(warm=True) == 0.25 and calls[2] == "warm"


def test_the_references_measure_any_array_library_alike():
    import torch

    from numpy_mnist.bench.references import _references

    x, _ = synthetic_like(100)
    refs = _references(x, torch.from_numpy, Trial, ("x @ ones", "sum"), warmups=1, repeats=2, matmul_n=16,
                       matmul_timing=(1, 3))
    assert set(refs["stream"]["methods"]) == {"x @ ones", "sum"} and refs["stream"]["bytes"] == x.nbytes
    assert refs["matmul"]["repeats"] == 3 and refs["matmul"]["flop_per_s"] == 2 * 16**3 / refs["matmul"]["median_s"]
