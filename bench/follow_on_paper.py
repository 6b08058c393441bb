#!/usr/bin/env python
"""On paper (not a measurement): an experiment's wall time and time to its first offline point with
``OFFLINE_START=after`` and with ``follow``, for one online run and one offline job on it, each on
its own resources (a cluster: the online job on a CPU node, the offline job on its own GPU), from
the speeds given.

    .venv/bin/python bench/follow_on_paper.py                       # Kangaroo 10M, the README's cases
    .venv/bin/python bench/follow_on_paper.py --online-sps 1200 --offline-sps 400 --epochs 100

The model is the launcher's: interval ``k`` trains ``ceil(epochs * limit_k / batch)`` gradient steps
on the first ``limit_k = k * steps / intervals`` transitions, then evaluates. ``after`` starts the
offline job when the online run ends; ``follow`` starts interval ``k`` when mark ``k`` is saved and
interval ``k - 1`` is done. The offline job holds its GPU from its start to its end: with
``follow`` from the online run's start, idle while it waits for marks. Queueing, start-up and data
verification are left out (the same both ways, but for verification, which a follower spreads
over the run).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.cli_parse import cli  # noqa: E402


@dataclass
class Args:
    """Wall time of after vs follow, from speeds."""

    steps: int = 10_000_000
    """online transitions (ONLINE_STEPS)"""
    intervals: int = 30
    """evaluation marks (INTERVALS_COUNT)"""
    online_sps: tuple[float, ...] = (400.0, 1200.0)
    """online transitions per second, one figure per case (a 16-core node: see docs/speed.md)"""
    offline_sps: tuple[float, ...] = (68.0, 400.0, 1500.0)
    """offline gradient steps per second on the offline job's GPU, one figure per case"""
    epochs: tuple[int, ...] = (1, 100)
    """OFFLINE_EPOCHS, one figure per case"""
    batch: int = 256
    """offline minibatch size"""
    eval_seconds: float = 120.0
    """seconds of one evaluation (both online and offline; Kangaroo, 10 episodes)"""


def offline_schedule(starts: list[float], train: list[float], eval_s: float) -> list[float]:
    """End time of each interval when interval ``k`` may start at ``starts[k]`` at the earliest."""
    ends, t = [], 0.0
    for start, seconds in zip(starts, train):
        t = max(t, start) + seconds + eval_s
        ends.append(t)
    return ends


def one_case(a: Args, online_sps: float, offline_sps: float, epochs: int) -> dict[str, float]:
    """Hours: online run, after (wall, first point, GPU held), follow (wall, first point, GPU held)."""
    limits = [round(a.steps * k / a.intervals) for k in range(1, a.intervals + 1)]
    marks = [limit / online_sps + k * a.eval_seconds for k, limit in enumerate(limits, 1)]
    online_end = marks[-1]
    train = [math.ceil(epochs * limit / a.batch) / offline_sps for limit in limits]
    after = offline_schedule([online_end] * a.intervals, train, a.eval_seconds)
    follow = offline_schedule(marks, train, a.eval_seconds)
    h = 3600.0
    return {"online": online_end / h, "after_wall": max(online_end, after[-1]) / h,
            "after_first": after[0] / h, "after_gpu": (after[-1] - online_end) / h,
            "follow_wall": max(online_end, follow[-1]) / h, "follow_first": follow[0] / h,
            "follow_gpu": follow[-1] / h}


def main(a: Args) -> None:
    print(f"{a.steps:,} transitions, {a.intervals} intervals, batch {a.batch}, "
          f"{a.eval_seconds:.0f} s per evaluation; hours")
    print("| online steps/s | offline steps/s | epochs | online | after: wall | first point "
          "| GPU held | follow: wall | first point | GPU held |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for on in a.online_sps:
        for off in a.offline_sps:
            for ep in a.epochs:
                r = one_case(a, on, off, ep)
                print(f"| {on:,.0f} | {off:,.0f} | {ep} | {r['online']:.2f} | {r['after_wall']:.2f} "
                      f"| {r['after_first']:.2f} | {r['after_gpu']:.2f} | {r['follow_wall']:.2f} "
                      f"| {r['follow_first']:.2f} | {r['follow_gpu']:.2f} |")


if __name__ == "__main__":
    main(cli(Args))
