#!/usr/bin/env python
"""Benchmark (not a test) of evaluation videos (``--eval_video``): the one evaluation function
(:func:`blendrl.evaluation.evaluate`) with and without its video, side by side in one process, per
environment and agent (an untrained neural agent and an untrained BlendRL agent), alternating
plain and filmed evaluations ``--repeats`` times and comparing the medians. Every pair of results
must be identical (the video changes nothing the agent sees); the goal is a ratio of at most 1.3.

    .venv/bin/python bench/bench_video.py                                   # CartPole and Kangaroo
    .venv/bin/python bench/bench_video.py --envs cartpole --episodes 10 --eval-envs 8

Printed per case: the seconds of an evaluation without and with its video (medians), their ratio,
the frames written (episode 0's length) and the extra milliseconds per frame.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blendrl.cli_parse import cli  # noqa: E402


@dataclass
class Args:
    """Evaluation with and without its video, side by side."""

    envs: tuple[str, ...] = ("cartpole", "kangaroo")
    """environments to measure"""
    agents: tuple[str, ...] = ("neural", "blendrl")
    """agents to measure (untrained): neural, blendrl"""
    episodes: tuple[int, ...] = (10, 2)
    """evaluation episodes per environment (one number: for every environment)"""
    eval_envs: tuple[int, ...] = (8, 2)
    """parallel copies of an evaluation per environment (one number: for every environment)"""
    repeats: int = 3
    """plain and filmed evaluations per case (alternating); the medians are compared"""
    seed: int = 0
    """evaluation seed (and torch's, for the untrained agents' weights)"""
    json_out: Path | None = None
    """also write the figures to this JSON file"""


def _per_env(values: tuple[int, ...], i: int) -> int:
    return values[i] if len(values) > 1 else values[0]


def measure(env: str, agent_kind: str, episodes: int, eval_envs: int, repeats: int, seed: int,
            folder: Path) -> dict:
    """One case: the medians of ``repeats`` plain and filmed evaluations, checked equal."""
    import numpy as np
    import torch

    from blendrl.agents import BlendRLAgent, NeuralAgent
    from blendrl.envs import get_spec
    from blendrl.evaluation import evaluate

    torch.manual_seed(seed)
    agent = (BlendRLAgent if agent_kind == "blendrl" else NeuralAgent)(get_spec(env))
    cpu = torch.device("cpu")
    plain_s, video_s, results = [], [], []
    for r in range(repeats):
        for video in (None, folder / f"{env}_{agent_kind}_{r}.mp4"):
            t0 = time.perf_counter()
            res = evaluate(agent, env, episodes, seed, cpu, num_envs=eval_envs, video=video)
            (plain_s if video is None else video_s).append(time.perf_counter() - t0)
            results.append(res)
    same = all(np.array_equal(r.returns, results[0].returns)
               and np.array_equal(r.lengths, results[0].lengths)
               and r.logic_weight == results[0].logic_weight for r in results)
    plain, filmed = statistics.median(plain_s), statistics.median(video_s)
    frames = int(results[0].lengths[0])
    return {"env": env, "agent": agent_kind, "episodes": episodes, "eval_envs": eval_envs,
            "steps": int(results[0].lengths.sum()), "frames": frames, "plain_s": plain,
            "video_s": filmed, "ratio": filmed / plain, "ms_per_frame": 1000 * (filmed - plain) / frames,
            "identical": same}


def main(args: Args) -> int:
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, env in enumerate(args.envs):
            for agent_kind in args.agents:
                rows.append(measure(env, agent_kind, _per_env(args.episodes, i),
                                    _per_env(args.eval_envs, i), args.repeats, args.seed, Path(tmp)))
                row = rows[-1]
                print(f"{env:10s} {agent_kind:8s} {row['episodes']:3d} episodes on "
                      f"{row['eval_envs']} copies ({row['steps']} steps): plain {row['plain_s']:.2f} s, "
                      f"video {row['video_s']:.2f} s, ratio {row['ratio']:.2f} "
                      f"({row['frames']} frames, +{row['ms_per_frame']:.1f} ms/frame), "
                      f"identical results: {row['identical']}", flush=True)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(cli(Args)))
