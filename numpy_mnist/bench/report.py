"""What a person reads: the Markdown report, the JSON with every figure, and PNG plots.

:func:`markdown` is one section after another (machine, references, the epoch table, goals,
whole runs, engines that did not run, sweep), each a small function of the results dict.
"""

from __future__ import annotations

import math
from pathlib import Path

from numpy_mnist.bench.machine import NO_GPU
from numpy_mnist.files import atomic_write, write_json
from numpy_mnist.plots import pyplot, save_figure

__all__ = ["markdown", "write_results", "plot_epoch_times", "plot_sweep"]


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: str, rows) -> list[str]:
    """A Markdown table: ``header``'s cells split at ``|``, the first left-aligned, the rest right-aligned unless
    they start with ``<``; one line per row of cells."""
    cells = header.split("|")
    return ["", "| " + " | ".join(c.lstrip("<") for c in cells) + " |",
            "|---|" + "|".join("---" if c.startswith("<") else "---:" for c in cells[1:]) + "|",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def markdown(results: dict) -> str:
    """The report as Markdown: machine, references, the epoch table with its ratios, goals, sweep."""
    sections = (_header, _references, _epochs, _targets, _whole_runs, _unavailable, _sweep)
    lines = [line for section in sections for line in section(results)]
    if "elapsed_s" in results:
        lines += ["", f"The benchmark took {results['elapsed_s']:.1f} s."]
    return "\n".join(lines).rstrip() + "\n"


def _header(results: dict) -> list[str]:
    m, d, t = results["machine"], results["data"], results["timing"]
    v, gpu, blas, others = m["versions"], m["gpu"]["name"], m["numpy_blas_threads"], m.get("other_programs") or {}
    busy = others.get("other_programs_cores")
    out = ["# numpy-mnist benchmark: one training epoch", ""]
    if gpu == NO_GPU:
        out += ["> **No GPU found** on this machine: only the CPU engines ran; the GPU rows, GPU goals",
                "> and the CPU/GPU crossover are absent (see *Engines that did not run*).", ""]
    if busy is not None and busy > 0.1:
        out += [f"> **Warning**: other programs kept {busy:.2f} CPU cores busy, on average, during this run; "
                "timings on a shared machine wander with them (run again on an idle machine, e.g. "
                "`numpy-mnist bench --wait-quiet 0.3`).", ""]
    out += [
        f"- CPU: {m['cpu']}, {m['cores']['logical']} logical CPUs ({m['cores']['usable']} usable)",
        f"- GPU: **{gpu}**" + (f" ({m['gpu'].get('memory_GiB')} GiB, seen by {m['gpu'].get('seen_by')})"
                               if gpu != NO_GPU else ""),
        f"- NumPy {v['numpy']} ({v['numpy_blas']}): BLAS threads {blas['threads']} ({blas['how']}); "
        "elementwise operations on 1 thread",
        f"- PyTorch: {v['torch']}" + (f", threads set to {m['torch_threads']} (= NumPy's BLAS threads)"
                                      if m.get("torch_threads") else ""),
        f"- CuPy: {v['cupy']}; numpy-mnist {v['numpy_mnist']}; Python {v['python']}",
    ]
    if busy is not None:
        out.append(f"- Other programs meanwhile: {busy:.2f} CPU cores busy on average "
                   f"(load average {others['load_average']['start']} at the start)")
    return out + [
        f"- Data: {d['source']}: {d['rows']:,} x {d['columns']} {d['dtype']} ({d['bytes'] / 1e6:.1f} MB); "
        "batch 256, no shuffle; an epoch is forward + backward + SGD step over every batch, validation excluded "
        "(the ResNet-18's: under the epoch table)",
        f"- Timing: {t['warmups']} warm-ups, then {t['repeats']} repeats, {t['method']}; medians"
        + (" (quick run)" if results.get("quick") else ""),
    ]


def _references(results: dict) -> list[str]:
    refs = results["references"]
    rows = [(dev.upper(), f"{_ms(ref['stream']['seconds'])} ms ({ref['stream']['best_method']})",
             f"{ref['stream']['GB_per_s']:.1f} GB/s", f"{ref['matmul']['flop_per_s'] / 1e9:.1f} GFLOP/s "
             f"(n = {ref['matmul']['n']})") for dev, ref in refs.items()]
    return ["", "## Physical references (same run)",
            *_table("device|streaming pass over the data|bandwidth|float32 matrix product", rows),
            "", "The streaming pass is the fastest of: " + "; ".join(
                f"{dev.upper()} {name}: {_ms(m['median_s'])} ms" for dev, ref in refs.items()
                for name, m in ref["stream"]["methods"].items()) + "."]


def _epochs(results: dict) -> list[str]:
    rows = [(r["model"], r["label"], _ms(r["median_s"]), _ratio(r["speedup_vs_torch_cpu"]), _ratio(r["x_stream"]),
             _ratio(r["x_hardware_bound"])) for r in results["epochs"]]
    out = ["", "## One epoch at the book's sizes, and of the ResNet-18", *_table(
        "model|<engine|epoch (ms)|speed-up vs PyTorch eager CPU|x streaming pass|x hardware bound", rows)]
    floors = [f"{r['model']} {_ms(f)} ms (the epoch {r['median_s'] / f:.2f}x it)" for r in results["epochs"]
              if (f := r.get("blas_floor", {}).get("median_s"))]
    if floors:
        out += ["", "BLAS floor (the epoch's matrix products alone, batch by batch, NumPy; the ResNet-18's: its "
                "convolutions' products): " + "; ".join(floors) + "."]
    return out + ["", "*x streaming pass*: epoch time over one read of the training data on the same device. "
                  "*x hardware bound*: over max(matrix-product FLOPs / measured FLOP/s, data bytes / measured "
                  "bandwidth)."] + _resnet(results.get("resnet18"))


def _resnet(facts: dict | None) -> list[str]:
    if facts is None:
        return []
    n, steps = facts["batches_timed"], facts["epoch_batches"]
    timed = "whole epochs" if n == steps else f"the first {n} of its {steps} batches, scaled to the epoch"
    out = ["", f"ResNet-18 (width {facts['width']}): batch {facts['batch_size']}, {steps} batches, the last partial "
           f"one dropped, no shuffle, dropout on, cross-entropy over 2 classes; {facts['optimizer']}; timed on "
           f"{timed}, after a warm-up of {facts['warmup_batches']} batches."]
    if "peak_memory" in facts:
        mem = facts["peak_memory"]
        out[-1] += (f"  Peak memory of the NumPy epoch: {mem['bytes'] / 1e6:,.0f} MB ({mem['how']}); the whole "
                    f"process's peak resident memory, PyTorch included: {mem['process_max_rss_bytes'] / 1e6:,.0f} MB.")
    return out


def _targets(results: dict) -> list[str]:
    """The project's own speed goals: each measured one beside its goal, met or not (and why not, where
    known); those not measured one line each, except the GPU goals on a machine without a GPU: one line."""
    rows, unmeasured, no_gpu = [], [], 0
    for tg in results["targets"]:
        if tg["measured"] is None and tg["met"] is None:
            note = tg["note"] or "not measured in this run"
            no_gpu += note.startswith(NO_GPU)
            unmeasured += [] if note.startswith(NO_GPU) else [f"- {tg['what']}: not measured: {note}."]
            continue
        goal = tg["goal"] + "".join(f" ({name} {tg[name]:g}x)" for name in ("floor", "stretch") if name in tg)
        measured = ((tg["note"] or "-") if tg["measured"] is None  # a statement: the note says it
                    else _ratio(tg["measured"]) if tg["unit"] == "x" else f"{tg['measured']:.3g} {tg['unit']}")
        rows.append((tg["what"], goal, measured, _met(tg)))
    if no_gpu:
        unmeasured.insert(0, f"- GPU goals: not measured, no GPU found ({no_gpu} goal{'s' if no_gpu > 1 else ''}).")
    return ["", "## Goals", "",
            "The project's own speed goals, against this run's medians: *A against B* is B's time over A's (how many "
            "times faster A is); an epoch *in streaming passes* is its time over one streaming pass.  A goal not "
            "met is a measurement, not a failed run.",
            *_table("goal|<wanted|this run|<met?", rows or [("(none measured on this machine)", "", "", "")])] + (
        ["", *unmeasured] if unmeasured else [])


def _met(target: dict) -> str:
    """"met", "stated" (a goal that is a statement), or "not met" with the floor's state and the known reason."""
    if target["met"] is not False:
        stretch = {True: ", the stretch too", False: ", not the stretch"}.get(target.get("stretch_held"), "")
        return "stated" if target["goal"] == "stated" else f"met{stretch}"
    held = target.get("floor_held")
    floor = "" if held is None else f" ({'at or above' if held else 'under'} the {target['floor']:g}x floor)"
    return f"not met{floor}" + (f": {target['note']}" if target["note"] else "")


def _whole_runs(results: dict) -> list[str]:
    def seconds(run: dict | None) -> str:
        return "-" if run is None else f"{run['training_s']:.3g} ({run['wall_s']:.3g})"

    rows = []
    for run in results.get("whole_runs") or []:
        a, b = run["runs"].get("numpy"), run["runs"].get("cupy")
        acc = f"{a['accuracy']:.4f}, {b['accuracy']:.4f}" if a and b else (run["note"] or "-")
        rows.append((f"`{run['command']}`", seconds(a), seconds(b), _ratio(run.get("speedup")), acc))
    if not rows:
        return []
    return ["", "## Whole runs (`numpy-mnist train`, training time = the history's epoch seconds summed)", *_table(
        "command|NumPy: training (wall) s|CuPy: training (wall) s|NumPy / CuPy|<accuracy NumPy, CuPy", rows)]


def _unavailable(results: dict) -> list[str]:
    unavailable = [f"- `{k}`: {why}" for k, why in results["unavailable"].items()]
    return ["", "## Engines that did not run", "", *unavailable] if unavailable else []


def _sweep(results: dict) -> list[str]:
    if "sweep" not in results:
        return []
    out = ["", "## Sweep (median ms per epoch)"]
    for s in results["sweep"]["series"]:
        keys, labels = _swept(s, results)
        rows = [(f"{p['value']:,}", *(_ms(p["engines"][k]["median_s"]) for k in keys)) for p in s["points"]]
        out += ["", f"### {s['axis']} ({s['model']})", *_table("|".join([s["axis"], *labels]), rows), "",
                f"Crossover: {s['crossover']['statement']}."]
    return out


def _swept(series: dict, results: dict) -> tuple[list[str], list[str]]:
    """The keys of the engines a sweep series timed (those of its first point), and their labels."""
    labels = {e["key"]: e["label"] for e in results["engines"]}
    keys = list(series["points"][0]["engines"]) if series["points"] else []
    return keys, [labels.get(k, k) for k in keys]


def write_results(results: dict, out_dir, *, plots: bool = True) -> list[Path]:
    """Write ``bench.md``, ``bench.json`` and (with ``plots``) the PNGs into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "bench.md", "w") as f:
        f.write(markdown(results))
    written = [out_dir / "bench.md", write_json(out_dir / "bench.json", results)]
    if plots:
        written.append(plot_epoch_times(results, out_dir / "epoch_times.png"))
        written += [plot_sweep(s, results, out_dir / f"sweep_{s['axis']}_{s['model']}.png")
                    for s in (results.get("sweep") or {}).get("series", [])]
    return written


def plot_epoch_times(results: dict, path) -> Path:
    """Bars: one epoch at the book's sizes and of the ResNet-18, per model and engine, log scale, with the CPU
    streaming pass."""

    times = {(r["model"], r["label"]): r["median_s"] * 1e3 for r in results["epochs"]}
    models, labels = (list(dict.fromkeys(key[i] for key in times)) for i in (0, 1))
    fig, ax = pyplot().subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        ax.bar([j + i * width for j in range(len(models))], [times.get((m, label), math.nan) for m in models], width,
               label=label)
    stream = results["references"]["cpu"]["stream"]["seconds"] * 1e3
    ax.axhline(stream, color="black", linestyle="--", linewidth=1, label="CPU streaming pass")
    ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(models))], models)
    ax.set_title(f"One epoch (resnet18: batch 64, else 256) — GPU: {results['machine']['gpu']['name']}")
    return _finish(fig, ax, path, axis="y")


def plot_sweep(series: dict, results: dict, path) -> Path:
    """Time per epoch against the swept size, one line per engine, both axes logarithmic."""

    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    for key, label in zip(*_swept(series, results)):
        points = [p for p in series["points"] if key in p["engines"]]
        ax.plot([p["value"] for p in points], [p["engines"][key]["median_s"] * 1e3 for p in points], marker="o",
                label=label)
    ax.set_xscale("log")
    ax.set_xlabel({"batch_size": "batch size", "hidden": "hidden width", "rows": "training rows"}[series["axis"]])
    ax.set_title(f"{series['model']}: epoch time vs {series['axis']} (GPU: {results['machine']['gpu']['name']})",
                 fontsize=10)
    return _finish(fig, ax, path, which="both")


def _finish(fig, ax, path, **grid) -> Path:
    """Milliseconds per epoch on a log scale, the legend and the grid; the figure saved to ``path``."""

    ax.set_yscale("log")
    ax.set_ylabel("ms per epoch (median)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, **grid)
    return save_figure(fig, path)
