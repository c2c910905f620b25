"""Clocks that tell the truth: warm-ups first, the device synchronized before every clock read, medians.

A :class:`Trial` is one thing to time (one training epoch of one engine on one workload).  Several
trials are timed *interleaved*: round after round, each trial once per round.  On a busy machine
the load then falls on every trial alike, so their ratios, which are what this benchmark reports,
hold even when the absolute times wander.

Trials of libraries whose thread pools get in each other's way are interleaved within their own
group only.  NumPy's BLAS and PyTorch's OpenMP each keep their worker threads spinning for a while
after every call, and a trial of one timed right after a trial of the other finds those threads
still burning the cores (on 2 cores, PyTorch's epoch came out several times slower that way).  So
the groups take turns in ``blocks`` blocks; each turn starts with ``settle_s`` seconds of sleep (the
other library's threads go to sleep) and untimed runs: the warm-ups on the first turn, one run of
each trial on later turns.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

__all__ = ["Measurement", "Trial", "cupy_trial", "torch_cuda_trial", "time_interleaved"]


@dataclass
class Measurement:
    """The seconds of every timed repeat (warm-ups excluded) and their summary."""

    times_s: list[float] = field(default_factory=list)
    warmups: int = 0

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def scaled(self, factor: float) -> "Measurement":
        """Every repeat times ``factor`` (a prefix of an epoch's batches scaled to the whole epoch)."""
        return Measurement([t * factor for t in self.times_s], self.warmups)

    def as_dict(self) -> dict:
        t = self.times_s
        q1, q3 = (t[0], t[0]) if len(t) < 2 else statistics.quantiles(t, n=4, method="inclusive")[::2]
        return {"median_s": self.median_s, "min_s": min(t), "q1_s": q1, "q3_s": q3,
                "repeats": len(t), "warmups": self.warmups, "times_s": list(t)}


class Trial:
    """Something to time: ``run()`` does the work (asynchronously on a GPU), ``synchronize()`` waits.

    :meth:`timed` synchronizes, reads the host's clock, runs, synchronizes again and reads the
    clock: no clock is ever read while device work is still queued.  With ``events``, a pair
    ``(new_event, elapsed_s)``, it reads the device's own clock instead: CUDA events recorded on the
    stream that runs the work.  ``warm()`` is what an untimed run runs (``run`` unless given: a
    ResNet-18 trial warms up on two batches, not a whole epoch).
    """

    def __init__(self, run: Callable[[], object], synchronize: Callable[[], None] | None = None, *,
                 warm: Callable[[], object] | None = None, events: tuple | None = None) -> None:
        self.run, self.warm, self.events, self.synchronize = run, warm or run, events, synchronize or (lambda: None)

    def timed(self, warm: bool = False) -> float:
        work = self.warm if warm else self.run
        self.synchronize()
        if self.events is None:
            start = time.perf_counter()
            work()
            self.synchronize()
            return time.perf_counter() - start
        new_event, elapsed_s = self.events
        start, end = new_event(), new_event()
        start.record()
        work()
        end.record()
        end.synchronize()
        return elapsed_s(start, end)


def cupy_trial(run, synchronize=None, warm=None) -> Trial:
    """Timed with ``cupy.cuda.Event`` (``synchronize``: the current stream's, by default)."""
    import cupy

    return Trial(run, synchronize or cupy.cuda.get_current_stream().synchronize, warm=warm,
                 events=(cupy.cuda.Event, lambda start, end: cupy.cuda.get_elapsed_time(start, end) / 1e3))


def torch_cuda_trial(run, warm=None) -> Trial:
    """Timed with ``torch.cuda.Event`` on PyTorch's current stream."""
    import torch

    return Trial(run, torch.cuda.synchronize, warm=warm, events=(partial(torch.cuda.Event, enable_timing=True),
                                                                 lambda start, end: start.elapsed_time(end) / 1e3))


def time_interleaved(trials: dict, *, warmups: int, repeats: int, budget_s: float | None = None,
                     min_repeats: int = 3, group_of: Callable[[object], object] | None = None,
                     blocks: int = 1, settle_s: float = 0.5) -> dict[object, Measurement]:
    """Time every trial ``repeats`` times, interleaved, after ``warmups`` untimed runs of each.

    ``group_of(key)`` sorts the trials into groups that take turns (see the module's docstring).
    With ``budget_s``, each group's rounds are cut so that they take about its share of that long,
    judged from its last warm-up round, but never below ``min_repeats``.
    """
    groups: dict[object, list] = {}
    for key in trials:  # in the trials' order, as the groups' turns are
        groups.setdefault(group_of(key) if group_of else None, []).append(key)
    settle = settle_s if len(groups) > 1 else None  # one group: nothing to wait for between turns
    results = {key: Measurement(warmups=warmups) for key in trials}
    blocks = max(1, blocks)
    plans: dict[object, list[int]] = {}  # each group's timed rounds per turn
    for block in range(blocks):
        for name, keys in groups.items():
            if block == 0:  # the warm-ups, and from the last of them, this group's rounds, spread evenly over the turns
                rounds = _rounds(repeats, _untimed(trials, keys, warmups, settle), budget_s, len(groups), min_repeats)
                plans[name] = [rounds // blocks + (b < rounds % blocks) for b in range(blocks)]
            elif plans[name][block] and settle is not None:
                _untimed(trials, keys, 1, settle)  # wake this library's threads, warm the caches again
            for _ in range(plans[name][block]):
                for k in keys:
                    results[k].times_s.append(trials[k].timed())
    return results


def _untimed(trials: dict, keys: list, rounds: int, settle_s: float | None) -> float:
    """Sleep ``settle_s`` (if any), run ``rounds`` rounds untimed; the seconds of the last round."""
    if settle_s is not None:
        time.sleep(settle_s)
    round_s = 0.0
    for _ in range(rounds):
        round_s = sum(trials[k].timed(warm=True) for k in keys)
    return round_s


def _rounds(repeats: int, round_s: float, budget_s: float | None, groups: int, min_repeats: int) -> int:
    """Timed rounds: ``repeats``, or as many as fit in a group's share of ``budget_s``, never below ``min_repeats``."""
    if budget_s is None or round_s <= 0:
        return max(repeats, 1)
    return max(min(repeats, int(budget_s / groups / round_s)), min(min_repeats, repeats), 1)
