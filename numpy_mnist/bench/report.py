"""What a person reads: a Markdown table, the JSON with every figure, and PNG plots of the sweep."""

from __future__ import annotations

import math
from pathlib import Path

from numpy_mnist.bench.machine import NO_GPU
from numpy_mnist.files import atomic_write, write_json

__all__ = ["markdown", "write_results", "plot_epoch_times", "plot_sweep"]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def machine_lines(results: dict) -> list[str]:
    m = results["machine"]
    v = m["versions"]
    gpu = m["gpu"]["name"]
    blas = m["numpy_blas_threads"]
    lines = [
        f"- CPU: {m['cpu']}, {m['cores']['logical']} logical CPUs ({m['cores']['usable']} usable)",
        f"- GPU: **{gpu}**" + (f" ({m['gpu'].get('memory_GiB')} GiB, seen by {m['gpu'].get('seen_by')})"
                               if gpu != NO_GPU else ""),
        f"- NumPy {v['numpy']} ({v['numpy_blas']}): BLAS threads {blas['threads']} ({blas['how']}); "
        "elementwise operations on 1 thread",
        f"- PyTorch: {v['torch']}" + (f", threads set to {m['torch_threads']} (= NumPy's BLAS threads)"
                                      if m.get("torch_threads") else ""),
        f"- CuPy: {v['cupy']}; numpy-mnist {v['numpy_mnist']}; Python {v['python']}",
    ]
    busy = (m.get("other_programs") or {}).get("other_programs_cores")
    if busy is not None:
        lines.append(f"- Other programs meanwhile: {busy:.2f} CPU cores busy on average "
                     f"(load average {m.get('load_average', {}).get('start')} at the start)")
    return lines


def markdown(results: dict) -> str:
    """The report as Markdown: machine, references, the epoch table with its ratios, targets, sweep."""
    d = results["data"]
    t = results["timing"]
    out = ["# numpy-mnist benchmark: one training epoch", ""]
    if results["machine"]["gpu"]["name"] == NO_GPU:
        out += ["> **No GPU found** on this machine: only the CPU engines ran; the GPU rows, GPU targets",
                "> and the CPU/GPU crossover are absent (see *Engines that did not run*).", ""]
    busy = (results["machine"].get("other_programs") or {}).get("other_programs_cores")
    if busy is not None and busy > 0.1:
        out += [f"> **Warning**: other programs kept {busy:.2f} CPU cores busy, on average, during this run; "
                "timings on a shared machine wander with them (run again on an idle machine, e.g. "
                "`python benchmarks/run.py --wait-quiet 0.3`).", ""]
    out += machine_lines(results)
    out += [
        f"- Data: {d['source']}: {d['rows']:,} x {d['columns']} {d['dtype']} ({d['bytes'] / 1e6:.1f} MB); "
        "batch 256, no shuffle; an epoch is forward + backward + SGD step over every batch, validation excluded",
        f"- Timing: {t['warmups']} warm-ups, then {t['repeats']} repeats, {t['method']}; medians"
        + (" (quick run)" if results.get("quick") else ""),
        "",
        "## Physical references (same run)",
        "",
        "| device | streaming pass over the data | bandwidth | float32 matrix product |",
        "|---|---:|---:|---:|",
    ]
    for dev, ref in results["references"].items():
        s, mm = ref["stream"], ref["matmul"]
        out.append(f"| {dev.upper()} | {_ms(s['seconds'])} ms ({s['best_method']}) | {s['GB_per_s']:.1f} GB/s "
                   f"| {mm['flop_per_s'] / 1e9:.1f} GFLOP/s (n = {mm['n']}) |")
    out += ["", "The streaming pass is the fastest of: " + "; ".join(
        f"{dev.upper()} {name}: {_ms(m['median_s'])} ms" for dev, ref in results["references"].items()
        for name, m in ref["stream"]["methods"].items()) + "."]
    out += [
        "",
        "## One epoch at the book's sizes",
        "",
        "| model | engine | epoch (ms) | speed-up vs PyTorch eager CPU | x streaming pass | x hardware bound |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in results["epochs"]:
        out.append(f"| {row['model']} | {row['label']} | {_ms(row['median_s'])} | "
                   f"{_ratio(row['speedup_vs_torch_cpu'])} | {_ratio(row['x_stream'])} | "
                   f"{_ratio(row['x_hardware_bound'])} |")
    floors = [(row["model"], row["blas_floor"]["median_s"], row["median_s"]) for row in results["epochs"]
              if "blas_floor" in row]
    if floors:
        out += ["", "BLAS floor (the epoch's matrix products alone, batch by batch, NumPy): "
                + "; ".join(f"{m} {_ms(f)} ms ({f / e:.0%} of its epoch)" for m, f, e in floors) + "."]
    out += ["", "*x streaming pass*: epoch time over one read of the training data on the same device. "
            "*x hardware bound*: over max(matrix-product FLOPs / measured FLOP/s, data bytes / measured "
            "bandwidth).", "", "## Targets (issue 5)", ""]
    out += _targets_table([tg for tg in results["targets"] if tg.get("issue", 5) == 5])
    fused = [tg for tg in results["targets"] if tg.get("issue") == 11]
    if fused:
        out += ["", "## Targets (issue 11: the fused CUDA graph)", ""] + _targets_table(fused)
    whole = results.get("whole_runs")
    if whole:
        out += ["", "## Whole runs (`numpy-mnist train`, training time = the history's epoch seconds summed)", "",
                "| command | NumPy: training (wall) s | CuPy: training (wall) s | NumPy / CuPy "
                "| accuracy NumPy, CuPy |",
                "|---|---:|---:|---:|---|"]
        for run in whole:
            a, b = run["runs"].get("numpy"), run["runs"].get("cupy")
            acc = f"{a['accuracy']:.4f}, {b['accuracy']:.4f}" if a and b else (run["note"] or "-")
            out.append(f"| `{run['command']}` | {_seconds(a)} | {_seconds(b)} | {_ratio(run.get('speedup'))} | {acc} |")
    if results["unavailable"]:
        out += ["", "## Engines that did not run", ""]
        out += [f"- `{k}`: {why}" for k, why in results["unavailable"].items()]
    sweep = results.get("sweep")
    if sweep is not None:
        out += ["", "## Sweep (median ms per epoch)", ""]
        labels = {e["key"]: e["label"] for e in results["engines"]}
        for s in sweep["series"]:
            keys = list(s["points"][0]["engines"]) if s["points"] else []
            out += [f"### {s['axis']} ({s['model']})", "",
                    "| " + s["axis"] + " | " + " | ".join(labels.get(k, k) for k in keys) + " |",
                    "|---:|" + "---:|" * len(keys)]
            for p in s["points"]:
                out.append(f"| {p['value']:,} | " + " | ".join(_ms(p["engines"][k]["median_s"]) for k in keys) + " |")
            out += ["", f"Crossover: {s['crossover']['statement']}.", ""]
    if "elapsed_s" in results:
        out += ["", f"Whole run: {results['elapsed_s']:.1f} s."]
    return "\n".join(out).rstrip() + "\n"


def _seconds(run: dict | None) -> str:
    return "-" if run is None else f"{run['training_s']:.3g} ({run['wall_s']:.3g})"


def _targets_table(targets: list[dict]) -> list[str]:
    """A targets table: goal, measured value (in its unit, or why it is missing), met."""
    lines = ["| target | goal | measured | met |", "|---|---|---:|---|"]
    for tg in targets:
        met = {True: "yes", False: "**no**", None: "-"}[tg["met"]]
        if tg["measured"] is None:
            measured = tg["note"] or "-"
        elif tg.get("unit") == "ms":
            measured = f"{tg['measured']:.3g} ms"
        else:
            measured = _ratio(tg["measured"])
        lines.append(f"| {tg['what']} | {tg['goal']} | {measured} | {met} |")
    return lines


def write_results(results: dict, out_dir, *, plots: bool = True) -> list[Path]:
    """Write ``bench.md``, ``bench.json`` and (with ``plots``) the PNGs into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    md = out_dir / "bench.md"
    with atomic_write(md, "w") as f:
        f.write(markdown(results))
    written.append(md)
    js = out_dir / "bench.json"
    write_json(js, results)
    written.append(js)
    if plots:
        written.append(plot_epoch_times(results, out_dir / "epoch_times.png"))
        for s in (results.get("sweep") or {}).get("series", []):
            written.append(plot_sweep(s, results, out_dir / f"sweep_{s['axis']}_{s['model']}.png"))
    return written


def plot_epoch_times(results: dict, path) -> Path:
    """Bars: one epoch at the book's sizes, per model and engine, log scale, with the streaming pass."""
    from numpy_mnist.plots import pyplot, save_figure

    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in results["epochs"]))
    labels = list(dict.fromkeys(r["label"] for r in results["epochs"]))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        ys = [next((r["median_s"] * 1e3 for r in results["epochs"] if r["model"] == m and r["label"] == label),
                   math.nan) for m in models]
        ax.bar([j + i * width for j in range(len(models))], ys, width, label=label)
    stream = results["references"]["cpu"]["stream"]["seconds"] * 1e3
    ax.axhline(stream, color="black", linestyle="--", linewidth=1, label="CPU streaming pass")
    ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(models))], models)
    ax.set_yscale("log")
    ax.set_ylabel("ms per epoch (median)")
    ax.set_title(f"One epoch, batch 256 — GPU: {results['machine']['gpu']['name']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def plot_sweep(series: dict, results: dict, path) -> Path:
    """Time per epoch against the swept size, one line per engine, both axes logarithmic."""
    from numpy_mnist.plots import pyplot, save_figure

    plt = pyplot()
    labels = {e["key"]: e["label"] for e in results["engines"]}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    keys = list(series["points"][0]["engines"]) if series["points"] else []
    for key in keys:
        xs = [p["value"] for p in series["points"] if key in p["engines"]]
        ys = [p["engines"][key]["median_s"] * 1e3 for p in series["points"] if key in p["engines"]]
        ax.plot(xs, ys, marker="o", label=labels.get(key, key))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel({"batch_size": "batch size", "hidden": "hidden width", "rows": "training rows"}[series["axis"]])
    ax.set_ylabel("ms per epoch (median)")
    gpu = results["machine"]["gpu"]["name"]
    ax.set_title(f"{series['model']}: epoch time vs {series['axis']} (GPU: {gpu})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)
