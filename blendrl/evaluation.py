"""The one evaluation function used by all four methods (golden rule, docs/DESIGN.md section 7).

``evaluate`` runs ``n_episodes`` full episodes of the agent in fresh parallel copies of the live
environment and returns every episode's return and length:

- **unbiased**: which episodes count is fixed in advance — episode ``j`` (``0 <= j < n``) runs on
  copy ``j % k``; never "the first n to finish", which would favour short episodes;
- **different starts, disjoint seeds**: episode ``j`` starts from a reset with seed
  ``eval_seed(seed) + j``, far from the training seeds (``seed + i``); the returns are listed in
  episode order, so the result does not depend on the number of parallel copies;
- the same seeds at every evaluation of a run and for every method with the same ``seed``, so
  online and offline points at the same x are paired comparisons; on Atari the episode's seed
  also draws its random no-op start (:mod:`blendrl.envs.atari`) and ALE's sticky actions;
- actions, for every method alike (``policy``): ``"sample"`` (the default) draws from the
  policy, what PPO-style results in the field report and what the agent was trained to be;
  ``"greedy"`` takes the most probable action — a deterministic policy on a deterministic
  start repeats one game, and it can hide what a stochastic policy learned. A sample of episode
  ``j`` uses uniforms from its own generator seeded with the episode's seed (inverse-CDF
  sampling), so the actions, like the starts, do not depend on the number of parallel copies and
  two agents with the same policy play the same episodes.

``video`` (a path; ``--eval_video``): episode 0 is also written there as an MP4, one frame per
agent step, with the rules that fired beside the frame for BlendRL (:mod:`blendrl.video`); the
frames come from copy 0, which renders them, and nothing the agent sees or draws changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from blendrl.agents.base import Agent
from blendrl.envs import make_vec_env
from blendrl.video import EpisodeVideo

EVAL_POLICIES: tuple[str, ...] = ("sample", "greedy")
"""How an evaluation selects actions (``--eval_policy``)."""

DEFAULT_EVAL_POLICY = "sample"

EVAL_SEED_OFFSET = 1_000_000_000
"""Evaluation seeds start here; training copies use ``seed + i`` with small ``seed`` and ``i``."""


def eval_seed(seed: int) -> int:
    return EVAL_SEED_OFFSET + 10_000 * int(seed)


class EvalResult(NamedTuple):
    returns: np.ndarray
    """[n_episodes] undiscounted episode returns."""
    lengths: np.ndarray
    """[n_episodes] episode lengths in agent steps."""
    logic_weight: float | None
    """Mean blend weight of the logic actor over the counted steps (BlendRL), else None."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def result_entry(res: EvalResult, *, interval: int, data_limit: int, train_seconds: float,
                 eval_seconds: float, **extra) -> dict:
    """One ``results.json`` object (docs/FORMATS.md), the same schema for all four methods."""
    entry = {"interval": interval, "data_limit": data_limit, "mean_return": res.mean,
             "std_return": res.std, "episodes": len(res.returns), "returns": res.returns.tolist(),
             "lengths": res.lengths.tolist(), "train_seconds": train_seconds,
             "eval_seconds": eval_seconds, **extra}
    if res.logic_weight is not None:
        entry["logic_weight"] = res.logic_weight
    return entry


def episode_quotas(n_episodes: int, num_envs: int) -> np.ndarray:
    """How many episodes each parallel copy runs (fixed in advance)."""
    k = min(num_envs, n_episodes)
    quotas = np.full(k, n_episodes // k, dtype=np.int64)
    quotas[: n_episodes % k] += 1
    return quotas


def to_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """numpy -> torch without changing the dtype (uint8 frames stay uint8 until the network)."""
    return torch.as_tensor(x, device=device)


@torch.no_grad()
def evaluate(agent: Agent, env_name: str, n_episodes: int, seed: int, device: torch.device,
             num_envs: int = 8, policy: str = DEFAULT_EVAL_POLICY, video: Path | None = None
             ) -> EvalResult:
    """Run ``n_episodes`` full evaluation episodes of ``agent`` on ``env_name`` (``video``: write
    episode 0 there, module docstring)."""
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be positive, got {n_episodes}")
    if policy not in EVAL_POLICIES:
        raise ValueError(f"policy must be one of {EVAL_POLICIES}, got {policy!r}")
    greedy = policy == "greedy"
    quotas = episode_quotas(n_episodes, num_envs)
    k = len(quotas)
    base = eval_seed(seed)
    done_count = np.zeros(k, dtype=np.int64)
    returns = np.zeros(n_episodes, dtype=np.float64)
    lengths = np.zeros(n_episodes, dtype=np.int64)
    weight_sum, weight_n = 0.0, 0
    was_training = agent.training
    agent.eval()
    # The action sampler of the episode each copy plays (episode i first on copy i).
    samplers = [np.random.default_rng(base + i) for i in range(k)]
    env = make_vec_env(env_name, k, **({"video": True} if video is not None else {}))
    recorder = None if video is None else EpisodeVideo(video, agent, env.vec.metadata.get("render_fps"))
    try:
        logic, neural = env.reset(seed=base)  # copy i starts episode i
        while (done_count < quotas).any():
            active = done_count < quotas
            uniforms = None if greedy else torch.as_tensor(
                np.array([g.random() for g in samplers]), dtype=torch.float32, device=device)
            logic_t = to_tensor(logic, device)
            action, logic_weight = agent.act(logic_t, to_tensor(neural, device),
                                             deterministic=greedy, uniforms=uniforms)
            if logic_weight is not None:
                w = logic_weight.cpu().numpy()[active]
                weight_sum += float(w.sum())
                weight_n += int(w.size)
            if recorder is not None:
                recorder.add(env.frame, logic_t[0], logic_weight)
            step = env.step(action.cpu().numpy())
            logic, neural = step.obs_logic, step.obs_neural
            finished = _count_finished(step, active, done_count, returns, lengths)
            again = np.zeros(k, dtype=bool)
            again[finished] = done_count[finished] < quotas[finished]
            if again.any():  # start each copy's next episode from that episode's own seed
                seeds = [int(base + i + k * done_count[i]) if again[i] else None for i in range(k)]
                logic, neural = env.reset_copies(again, seeds)
                for i in np.flatnonzero(again):
                    samplers[i] = np.random.default_rng(seeds[i])
        if recorder is not None:
            recorder.finish()
    finally:
        if recorder is not None:
            recorder.close()
        env.close()
        agent.train(was_training)
    return EvalResult(returns, lengths, weight_sum / weight_n if weight_n else None)


def _count_finished(step, active: np.ndarray, done_count: np.ndarray, returns: np.ndarray,
                    lengths: np.ndarray) -> np.ndarray:
    """The copies whose counted episode ended in ``step``: their return and length recorded
    under the episode's index (copy ``i``'s ``n``-th episode is ``i + k * n``), counted."""
    k = len(done_count)
    finished = np.flatnonzero(step.done & active)
    for i in finished:
        episode = i + k * done_count[i]
        returns[episode] = step.episode_return[i]
        lengths[episode] = step.episode_length[i]
        done_count[i] += 1
    return finished
