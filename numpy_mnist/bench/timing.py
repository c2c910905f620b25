"""Clocks that tell the truth: warm-ups first, the device synchronized before every clock read, medians.

A :class:`Trial` is one thing to time (one training epoch of one engine on one workload).  Several
trials are timed *interleaved*: round after round, each trial once per round.  On a busy machine
the load then falls on every trial alike, so their ratios, which are what this benchmark reports,
hold even when the absolute times wander.  Trials of libraries whose thread pools would get in each
other's way (NumPy's BLAS, PyTorch's OpenMP) are interleaved within their own group only, and the
groups take turns in blocks, with a pause between (see :func:`time_interleaved`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Measurement", "Trial", "time_interleaved", "time_callable"]


@dataclass
class Measurement:
    """The seconds of every timed repeat (warm-ups excluded) and their summary."""

    times_s: list[float] = field(default_factory=list)
    warmups: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    @property
    def quartiles_s(self) -> tuple[float, float]:
        if len(self.times_s) < 2:
            return self.times_s[0], self.times_s[0]
        q = statistics.quantiles(self.times_s, n=4, method="inclusive")
        return q[0], q[2]

    def as_dict(self) -> dict:
        q1, q3 = self.quartiles_s
        return {"median_s": self.median_s, "min_s": self.min_s, "q1_s": q1, "q3_s": q3,
                "repeats": len(self.times_s), "warmups": self.warmups, "times_s": list(self.times_s)}


class Trial:
    """Something to time: ``run()`` does the work (asynchronously on a GPU), ``synchronize()`` waits.

    :meth:`timed` synchronizes, reads the clock, runs, synchronizes again and reads the clock: no
    clock is ever read while device work is still queued.  A GPU trial may override :meth:`timed`
    to use CUDA events (the device's own clock) instead.
    """

    def __init__(self, run: Callable[[], object], synchronize: Callable[[], None] | None = None) -> None:
        self.run = run
        self.synchronize = synchronize or (lambda: None)

    def timed(self) -> float:
        self.synchronize()
        start = time.perf_counter()
        self.run()
        self.synchronize()
        return time.perf_counter() - start


def time_interleaved(trials: dict, *, warmups: int, repeats: int, budget_s: float | None = None,
                     min_repeats: int = 3, group_of: Callable[[object], object] | None = None,
                     blocks: int = 1, settle_s: float = 0.5) -> dict[object, Measurement]:
    """Time every trial ``repeats`` times, interleaved, after ``warmups`` untimed runs of each.

    With ``budget_s``, a group's number of rounds is cut so that its timed rounds take about its
    share of that long (judged from its warm-up round), but never below ``min_repeats``.

    ``group_of`` sorts the trials into groups that must not share the machine's cores with each
    other's idle threads: NumPy's BLAS and PyTorch's OpenMP each keep their worker threads spinning
    for a while after every call, and a trial of one timed right after a trial of the other finds
    those threads still burning the cores (on 2 cores, PyTorch's epoch came out several times slower
    that way).  Trials are then interleaved only within their group; groups take turns in
    ``blocks`` blocks, each turn preceded by ``settle_s`` seconds of sleep (so the other library's
    threads go to sleep) and by the warm-ups (first turn) or one untimed run of each trial (later).
    """
    results = {key: Measurement(warmups=warmups) for key in trials}
    groups: dict[object, list] = {}
    for key in trials:
        groups.setdefault(group_of(key) if group_of else None, []).append(key)
    switching = len(groups) > 1
    blocks = max(1, blocks)
    plan: dict[object, list[int]] = {}
    for block in range(blocks):
        for name, keys in groups.items():
            if block == 0:
                if switching:
                    time.sleep(settle_s)
                round_s = 0.0
                for _ in range(warmups):
                    round_s = sum(trials[k].timed() for k in keys)
                count = repeats
                if budget_s is not None and round_s > 0:
                    count = max(min(repeats, int(budget_s / len(groups) / round_s)), min(min_repeats, repeats))
                count = max(count, 1)
                used = min(blocks, count)
                plan[name] = ([count // used + (1 if b < count % used else 0) for b in range(used)]
                              + [0] * (blocks - used))
            elif plan[name][block] == 0:
                continue
            elif switching:
                time.sleep(settle_s)
                for k in keys:  # untimed: wake this library's threads, warm the caches again
                    trials[k].timed()
            for _ in range(plan[name][block]):
                for k in keys:
                    results[k].times_s.append(trials[k].timed())
    return results


def time_callable(run: Callable[[], object], *, synchronize: Callable[[], None] | None = None,
                  warmups: int = 2, repeats: int = 7) -> Measurement:
    """Median-ready timings of one callable (warm-ups first, synchronized clock reads)."""
    return time_interleaved({"only": Trial(run, synchronize)}, warmups=warmups, repeats=repeats)["only"]
