#!/usr/bin/env python
"""Benchmark (not a test): online Atari PPO steps/s of this project against CleanRL's
``ppo_atari.py``, side by side in one run (issue 13's throughput goal).

    .venv/bin/python bench/bench_atari_online.py [--game seaquest] [--steps 16384] [--rounds 3]

Each round runs, one after the other and each as its own process like a real job, CleanRL's
``ppo_atari.py`` (``../shared/peers/cleanrl``; not part of this project: ``ALE/<Game>-v5`` with
``frameskip=1`` under its own MaxAndSkip, sticky actions on), ``train_neuralppo.py`` and
``train_blenderl.py`` (object extraction on, the project's start protocol), 8 envs, the same
number of steps and the same torch threads (``--threads``, default: this machine's CPUs). The
configurations alternate within a round, so a load on the machine hits them alike; the table
gives each one's median steps/s over the rounds and its ratio to CleanRL's (median of the
per-round ratios, with their range).

steps/s: CleanRL's own ``FINAL_SPS`` (global steps / seconds since its loop started); the
project's transitions / ``train_seconds`` of ``timing.json`` (collection and updates; the one
evaluation at the end is excluded, as CleanRL has none).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT.parent / "shared" / "peers" / "cleanrl" / "ppo_atari.py"
GYM_IDS = {"seaquest": "ALE/Seaquest-v5", "kangaroo": "ALE/Kangaroo-v5", "donkeykong": "ALE/DonkeyKong-v5"}


def cleanrl_sps(game: str, steps: int, threads: int, tmp: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, str(PEER), "--env-id", GYM_IDS[game], "--total-timesteps",
                           str(steps), "--num-envs", "8", "--seed", "1", "--no-cuda"],
                          cwd=tmp, env=env, capture_output=True, text=True, check=True)
    found = re.findall(r"FINAL_SPS[^0-9]*([0-9.]+)", proc.stdout + proc.stderr)
    if not found:
        raise RuntimeError(f"no FINAL_SPS in CleanRL's output:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return float(found[-1])


def project_sps(script: str, game: str, steps: int, threads: int, tmp: Path, tag: str) -> float:
    run_id = f"{Path(script).stem}_{tag}"
    subprocess.run([sys.executable, str(ROOT / script), "--env", game, "--num_envs", "8",
                    "--total_timesteps", str(steps), "--intervals", "1", "--eval_episodes", "1",
                    "--threads", str(threads), "--run_id", run_id, "--runs_dir", str(tmp / "runs"),
                    "--progress_seconds", "1000"], cwd=ROOT, check=True, capture_output=True)
    run = tmp / "runs" / run_id
    timing = json.loads((run / "timing.json").read_text())
    results = json.loads((run / "results.json").read_text())
    return results[-1]["data_limit"] / timing["train_seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="seaquest", choices=sorted(GYM_IDS))
    p.add_argument("--steps", type=int, default=16384, help="steps per run (a multiple of 1024)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    a = p.parse_args()
    if not PEER.is_file():
        sys.exit(f"CleanRL's ppo_atari.py is not at {PEER}")
    names = ("cleanrl ppo_atari.py", "train_neuralppo.py", "train_blenderl.py")
    sps: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for r in range(a.rounds):
            sps[names[0]].append(cleanrl_sps(a.game, a.steps, a.threads, tmp))
            for script in names[1:]:
                sps[script].append(project_sps(script, a.game, a.steps, a.threads, tmp, f"r{r}"))
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in sps.items()),
                  file=sys.stderr, flush=True)
    base = sps[names[0]]
    print(f"{a.game}, 8 envs, {a.steps} steps, {a.threads} torch threads, {a.rounds} rounds")
    print(f"| run | steps/s (median) | ratio to CleanRL (median, range) |\n|---|---|---|")
    for n, v in sps.items():
        ratios = [x / b for x, b in zip(v, base)]
        print(f"| {n} | {statistics.median(v):.0f} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
