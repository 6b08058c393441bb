#!/usr/bin/env python
"""Benchmark (not a test): steps per second of both online scripts on cartpole next to the raw
environment, and the cost of --save_dataset.

    .venv/bin/python bench/bench_online.py [--steps 50000] [--num_envs 8]

Training SPS = transitions / train_seconds (timing.json; evaluation time excluded). Each
configuration runs as its own process with --threads 1, like a real job.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def raw_sps(num_envs: int, steps: int) -> float:
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    n = steps // num_envs
    t0 = time.perf_counter()
    for _ in range(n):
        env.step(rng.integers(0, 2, num_envs))
    return n * num_envs / (time.perf_counter() - t0)


def script_sps(script: str, num_envs: int, steps: int, save: bool, tmp: Path) -> float:
    run_id = f"{Path(script).stem}_{'save' if save else 'nosave'}"
    cmd = [sys.executable, str(ROOT / script), "--env", "cartpole", "--num_envs", str(num_envs),
           "--total_timesteps", str(steps), "--intervals", "1", "--eval_episodes", "1",
           "--threads", "1", "--run_id", run_id, "--runs_dir", str(tmp / "runs"),
           "--dataset_dir", str(tmp / "data")] + (["--save_dataset"] if save else [])
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    timing = json.loads((tmp / "runs" / run_id / "timing.json").read_text())
    results = json.loads((tmp / "runs" / run_id / "results.json").read_text())
    return results[-1]["data_limit"] / timing["train_seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--num_envs", type=int, default=8)
    a = p.parse_args()
    raw = raw_sps(a.num_envs, a.steps)
    print(f"raw gymnasium CartPole-v1 SyncVectorEnv x{a.num_envs}: {raw:,.0f} steps/s")
    with tempfile.TemporaryDirectory() as d:
        for script in ("train_neuralppo.py", "train_blenderl.py"):
            plain = script_sps(script, a.num_envs, a.steps, False, Path(d))
            saving = script_sps(script, a.num_envs, a.steps, True, Path(d))
            print(f"{script:20s} {plain:8,.0f} steps/s ({plain / raw:.2f}x raw); with --save_dataset "
                  f"{saving:8,.0f} steps/s (cost {100 * (1 - saving / plain):+.1f}%)")


if __name__ == "__main__":
    main()
