#!/usr/bin/env python
"""Benchmark (not a test): action-selection time of the BlendRL agent against the neural agent.

    .venv/bin/python bench/bench_agents.py [--envs cartpole seaquest] [--batches 1 16 256] [--seconds 1.0]

For each environment and batch size: the median time of one ``agent.get_action_and_value`` call
(sampling, log-probability, entropy, value — what a PPO rollout step does) under ``torch.no_grad``
on real states from the environment, with 1 torch thread; the agents' calls alternate, so
that both see the same machine load (this 2-core machine is noisy) and neither runs with its
weights alone in the cache, as neither does in a rollout, where the environments step in between. Goals: BlendRL within 3x of neural on
classic control, within 1.5x on Atari (where the CNN dominates). The last two columns are the
BlendRL agent with ``compile_logic`` (its logic part through torch.compile).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for blendrl
from blendrl.cli_parse import cli  # noqa: E402
from blendrl.agents import BlendRLAgent, NeuralAgent
from blendrl.envs import get_spec, make_vec_env


@dataclass
class Args:
    envs: list[str] = field(default_factory=lambda: ["cartpole", "seaquest"])
    """environments to measure"""
    batches: list[int] = field(default_factory=lambda: [1, 16, 256])
    """batch sizes"""
    seconds: float = 1.0
    """measuring time per agent and configuration"""
    rounds: int = 5
    """the measuring time is split into this many rounds; the ratio printed is the median of the
    rounds' ratios, with their range (this 2-core machine's load drifts)"""
    compiled: bool = True
    """also measure the BlendRL agent with ``compile_logic`` (torch.compile of the logic part; the
    first calls compile, which takes tens of seconds per environment)"""


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
def median_call_seconds(agents, logic, neural, seconds: float) -> list[float]:
    """Median seconds of one call for each agent, the calls of the agents interleaved so that every
    agent sees the same machine load and the same cache state (the others' weights in between)."""
    times: list[list[float]] = [[] for _ in agents]
    end = time.perf_counter() + seconds * len(agents)
    while time.perf_counter() < end or len(times[0]) < 5:
        for agent, agent_times in zip(agents, times):
            t0 = time.perf_counter()
            agent.get_action_and_value(logic, neural)
            agent_times.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def main(args: Args) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    names = ["blendrl"] + (["compiled"] if args.compiled else [])
    print(f"{'env':12s} {'batch':>5s} {'neural ms':>10s}"
          + "".join(f" {n + ' ms':>12s} {'ratio':>6s} {'(range)':>13s}" for n in names))
    for env in args.envs:
        torch._dynamo.reset()  # compiled code is cached per function, up to 8 variants in all
        spec = get_spec(env)
        agents = [NeuralAgent(spec), BlendRLAgent(spec)]
        if args.compiled:
            agents.append(BlendRLAgent(spec, compile_logic=True))
            agents[2].load_state_dict(agents[1].state_dict())
        for batch in args.batches:
            logic, neural = states(env, batch)
            median_call_seconds(agents, logic, neural, 0.05)  # warm-up (and compilation)
            rounds = np.array([median_call_seconds(agents, logic, neural, args.seconds / args.rounds)
                               for _ in range(args.rounds)])  # [rounds, agents]
            ratios = rounds[:, 1:] / rounds[:, :1]
            line = f"{env:12s} {batch:5d} {1e3 * np.median(rounds[:, 0]):10.3f}"
            for k in range(len(names)):
                r = ratios[:, k]
                line += (f" {1e3 * np.median(rounds[:, k + 1]):12.3f} {np.median(r):5.2f}x"
                         f" {f'({r.min():.2f}-{r.max():.2f})':>13s}")
            print(line, flush=True)


if __name__ == "__main__":
    main(cli(Args))
