#!/usr/bin/env python
"""Benchmark (not a test): action-selection time of the BlendRL agent against the neural agent.

    .venv/bin/python bench/bench_agents.py [--envs cartpole seaquest] [--batches 1 16 256] [--seconds 1.0]

For each environment and batch size: the median time of one ``agent.get_action_and_value`` call
(sampling, log-probability, entropy, value — what a PPO rollout step does) under ``torch.no_grad``
on real states from the environment, with 1 torch thread. Goals: BlendRL within 3x of neural on
classic control, within 1.5x on Atari (where the CNN dominates).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for blendrl
from blendrl.agents import BlendRLAgent, NeuralAgent
from blendrl.envs import get_spec, make_vec_env


@dataclass
class Args:
    envs: list[str] = field(default_factory=lambda: ["cartpole", "seaquest"])
    """environments to measure"""
    batches: list[int] = field(default_factory=lambda: [1, 16, 256])
    """batch sizes"""
    seconds: float = 1.0
    """measuring time per configuration"""


def states(env: str, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` real states: a few random steps of a few copies, tiled to the batch size."""
    vec = make_vec_env(env, 4)
    logic, neural = vec.reset(seed=0)
    rng = np.random.default_rng(0)
    logics, neurals = [logic], [neural]
    for _ in range(16):
        step = vec.step(rng.integers(0, vec.spec.n_actions, 4))
        logics.append(step.obs_logic)
        neurals.append(step.obs_neural)
    vec.close()
    logic, neural = np.concatenate(logics), np.concatenate(neurals)
    idx = np.arange(batch) % len(logic)
    return torch.as_tensor(logic[idx]), torch.as_tensor(neural[idx])


@torch.no_grad()
def median_call_seconds(agent, logic, neural, seconds: float) -> float:
    for _ in range(3):
        agent.get_action_and_value(logic, neural)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        agent.get_action_and_value(logic, neural)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(args: Args) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{'env':12s} {'batch':>5s} {'neural ms':>10s} {'blendrl ms':>11s} {'ratio':>6s}")
    for env in args.envs:
        spec = get_spec(env)
        neural_agent, blend_agent = NeuralAgent(spec), BlendRLAgent(spec)
        for batch in args.batches:
            logic, neural = states(env, batch)
            tn = median_call_seconds(neural_agent, logic, neural, args.seconds)
            tb = median_call_seconds(blend_agent, logic, neural, args.seconds)
            print(f"{env:12s} {batch:5d} {1e3 * tn:10.3f} {1e3 * tb:11.3f} {tb / tn:5.2f}x", flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
