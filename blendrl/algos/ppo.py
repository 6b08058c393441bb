"""PPO as CleanRL does it: rollout storage, GAE with bootstrap through truncation, and the clipped
update (advantage normalisation, clipped value loss, entropy bonus, gradient clipping), plus a
blend-weight entropy bonus for the BlendRL agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from blendrl.agents.base import Agent


@dataclass(frozen=True)
class PPOConfig:
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    blend_ent_coef: float = 0.0


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
                terminated: torch.Tensor, dones: torch.Tensor, gamma: float, gae_lambda: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a rollout, all inputs ``[T, N]``.

    ``next_values[t]`` is V of the true successor state of step t (for an episode cut by the time
    limit: V of its final state). The TD error bootstraps unless the step **terminated**:
    ``delta_t = r_t + gamma * (1 - terminated_t) * next_values[t] - values[t]``; the GAE chain
    stops at every episode end (terminated or truncated):
    ``A_t = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}``. Returns (advantages, returns).

    With a lost life treated as terminal (:class:`~blendrl.algos.signal.LearnerSignal`), the
    caller passes ``terminated`` and ``dones`` with the life losses included: neither the
    bootstrap nor the chain crosses a lost life, exactly as CleanRL's ``EpisodicLifeEnv`` makes it.
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    not_term = 1.0 - terminated.float()
    not_done = 1.0 - dones.float()
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * not_term[t] * next_values[t] - values[t]
        last = delta + gamma * gae_lambda * not_done[t] * last
        advantages[t] = last
    return advantages, advantages + values


class RolloutBatch(NamedTuple):
    """A flat PPO training batch."""

    logic: torch.Tensor
    neural: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    values: torch.Tensor

    def index(self, idx: torch.Tensor) -> "RolloutBatch":
        return RolloutBatch(*(x[idx] for x in self))


class RolloutStorage:
    """``[num_steps, num_envs]`` buffers for one PPO iteration (states keep their dtypes)."""

    def __init__(self, num_steps: int, num_envs: int, logic_shape: tuple, neural_shape: tuple,
                 neural_dtype: torch.dtype, device: torch.device):
        T, N = num_steps, num_envs
        z = lambda *shape, dtype=torch.float32: torch.zeros(shape, dtype=dtype, device=device)  # noqa: E731
        self.num_steps, self.num_envs = T, N
        self.logic = z(T, N, *logic_shape)
        self.neural = z(T, N, *neural_shape, dtype=neural_dtype)
        self.actions = z(T, N, dtype=torch.long)
        self.log_probs = z(T, N)
        self.rewards = z(T, N)
        self.values = z(T, N)
        self.next_values = z(T, N)
        self.terminated = z(T, N)
        """1 where the learner does not bootstrap (termination; a lost life if that is terminal)."""
        self.dones = z(T, N)
        """1 where the episode ended (the successor is its final state, in ``next_values``)."""
        self.chain_ends = z(T, N)
        """1 where the GAE chain stops: ``dones``, or a lost life if that is terminal."""

    def finish(self, last_values: torch.Tensor, gamma: float, gae_lambda: float) -> RolloutBatch:
        """Fill in V(s') where the successor is the next stored state, run GAE, flatten.

        Before calling, ``next_values[t]`` must hold V(final state) wherever ``dones[t]``;
        ``last_values`` is V of the state after the last step.
        """
        nxt = torch.cat([self.values[1:], last_values.unsqueeze(0)], dim=0)
        next_values = torch.where(self.dones.bool(), self.next_values, nxt)
        adv, ret = compute_gae(self.rewards, self.values, next_values, self.terminated,
                               self.chain_ends, gamma, gae_lambda)
        flat = lambda x: x.reshape(self.num_steps * self.num_envs, *x.shape[2:])  # noqa: E731
        return RolloutBatch(flat(self.logic), flat(self.neural), flat(self.actions),
                            flat(self.log_probs), flat(adv), flat(ret), flat(self.values))


def ppo_update(agent: Agent, optimizer: torch.optim.Optimizer, batch: RolloutBatch,
               cfg: PPOConfig, generator: torch.Generator | None = None) -> dict[str, float]:
    """``update_epochs`` passes of clipped-PPO minibatch updates; returns mean statistics."""
    n = batch.actions.shape[0]
    mb_size = max(1, n // cfg.num_minibatches)
    stats: dict[str, list[float]] = {}
    clipfracs: list[float] = []
    approx_kl = torch.tensor(0.0)
    for _ in range(cfg.update_epochs):
        perm = torch.randperm(n, generator=generator).to(batch.actions.device)
        for start in range(0, n, mb_size):
            mb = batch.index(perm[start:start + mb_size])
            out = agent.get_action_and_value(mb.logic, mb.neural, mb.actions)
            logratio = out.log_prob - mb.log_probs
            ratio = logratio.exp()
            with torch.no_grad():
                old_approx_kl = (-logratio).mean()
                approx_kl = ((ratio - 1) - logratio).mean()
                clipfracs.append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean().item())
            adv = mb.advantages
            if cfg.norm_adv and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio,
                                -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            if cfg.clip_vloss:
                v_unclipped = (out.value - mb.returns) ** 2
                v_clipped = mb.values + torch.clamp(out.value - mb.values, -cfg.clip_coef, cfg.clip_coef)
                v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - mb.returns) ** 2).mean()
            else:
                v_loss = 0.5 * ((out.value - mb.returns) ** 2).mean()
            entropy = out.entropy.mean()
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            if out.blend_entropy is not None:
                blend_entropy = out.blend_entropy.mean()
                loss = loss - cfg.blend_ent_coef * blend_entropy
                stats.setdefault("losses/blend_entropy", []).append(blend_entropy.item())
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
            for key, val in (("losses/policy_loss", pg_loss), ("losses/value_loss", v_loss),
                             ("losses/entropy", entropy), ("losses/old_approx_kl", old_approx_kl)):
                stats.setdefault(key, []).append(val.item())
        if cfg.target_kl is not None and approx_kl > cfg.target_kl:
            break
    y_pred, y_true = batch.values.cpu().numpy(), batch.returns.cpu().numpy()
    var_y = np.var(y_true)
    result = {k: float(np.mean(v)) for k, v in stats.items()}
    result["losses/approx_kl"] = float(approx_kl)
    result["losses/clipfrac"] = float(np.mean(clipfracs)) if clipfracs else 0.0
    result["losses/explained_variance"] = float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)
    return result
