#!/usr/bin/env python
"""Evidence (not a test): the raw training-episode returns of one of this project's online runs
against one of CleanRL's ``ppo_atari.py`` on the same game, steps and seed (issue 13's
"baseline not handicapped").

    .venv/bin/python bench/compare_cleanrl.py --ours out/runs/RUN --cleanrl runs/ALE/Kangaroo-v5__ppo_atari__1__T

Both record whole games with their raw score: the project in ``training_log.pkl``
(``episode_returns`` / ``episode_end_steps``), CleanRL in its ``episodes.json`` (written when it
ends) or, for a run still going or stopped, its tensorboard ``charts/episodic_return`` (its
``RecordEpisodeStatistics`` sits inside ``EpisodicLifeEnv`` and the reward clipping, so these are
whole games and raw scores too). The window is the last ``--last`` fraction of the steps both
runs reached (or of ``--steps``); the table gives each run's episode count, mean and standard
error there, and the difference (ours - CleanRL) with a 95% bootstrap interval over episodes.
Episodes of one run are not independent draws (one learning policy), so read the interval as a
rough scale of the noise; seeds are what a claim needs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.contract import TRAINING_LOG  # noqa: E402
from blendrl.file_io import load_training_log  # noqa: E402


def ours(run_dir: Path) -> np.ndarray:
    """``[n, 2]`` (end step, raw return) of the project's run."""
    log = load_training_log(run_dir / TRAINING_LOG)
    return np.column_stack([np.asarray(log["episode_end_steps"], dtype=np.float64),
                            np.asarray(log["episode_returns"], dtype=np.float64)])


def cleanrl(run_dir: Path) -> np.ndarray:
    """``[n, 2]`` (global step, raw return) of a CleanRL run folder."""
    done = run_dir / "episodes.json"
    if done.is_file():
        rows = json.loads(done.read_text())["episodes"]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("charts/episodic_return")
    return np.asarray([(e.step, e.value) for e in events], dtype=np.float64).reshape(-1, 2)


def bootstrap_difference(a: np.ndarray, b: np.ndarray, draws: int = 10000,
                         seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), resampling each run's episodes."""
    rng = np.random.default_rng(seed)
    da = rng.choice(a, size=(draws, len(a))).mean(axis=1)
    db = rng.choice(b, size=(draws, len(b))).mean(axis=1)
    lo, hi = np.percentile(da - db, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ours", type=Path, required=True, help="the project's run folder")
    p.add_argument("--cleanrl", type=Path, required=True, help="CleanRL's run folder")
    p.add_argument("--steps", type=int, default=0,
                   help="compare up to this step (default: the last step both runs reached)")
    p.add_argument("--last", type=float, default=0.2, help="fraction of the steps in the window")
    p.add_argument("--bin", type=int, default=50000, help="steps per bin of the trend table")
    a = p.parse_args()
    runs = {"this project": ours(a.ours), "CleanRL ppo_atari.py": cleanrl(a.cleanrl)}
    for name, eps in runs.items():
        if len(eps) == 0:
            print(f"error: {name}: no finished training episode", file=sys.stderr)
            return 2
    reached = min(float(eps[-1, 0]) for eps in runs.values())
    end = float(a.steps) if a.steps else reached
    start = end * (1.0 - a.last)
    print(f"window: steps ({start:.0f}, {end:.0f}] (the last {a.last:.0%} of {end:.0f})")
    print("| run | episodes | mean raw return | s.e. |\n|---|---|---|---|")
    window = {}
    for name, eps in runs.items():
        r = eps[(eps[:, 0] > start) & (eps[:, 0] <= end), 1]
        window[name] = r
        se = r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else float("nan")
        print(f"| {name} | {len(r)} | {r.mean() if len(r) else float('nan'):.1f} | {se:.1f} |")
    a_r, b_r = window.values()
    if len(a_r) and len(b_r):
        lo, hi = bootstrap_difference(a_r, b_r)
        print(f"difference (this project - CleanRL): {a_r.mean() - b_r.mean():+.1f}, "
              f"95% bootstrap interval [{lo:+.1f}, {hi:+.1f}]")
    print(f"\nmean raw return per {a.bin}-step bin (episodes ending in it):")
    edges = np.arange(0, end + a.bin, a.bin)
    print("| steps | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for lo_e, hi_e in zip(edges[:-1], edges[1:]):
        cells = []
        for eps in runs.values():
            r = eps[(eps[:, 0] > lo_e) & (eps[:, 0] <= min(hi_e, end)), 1]
            cells.append(f"{r.mean():.1f} ({len(r)})" if len(r) else "-")
        print(f"| {lo_e:.0f}-{min(hi_e, end):.0f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
