"""What every agent of the project offers, for PPO, IQL and evaluation alike.

An agent is an ``nn.Module`` with ``policy(logic, neural) -> Policy`` (the action distribution, as
log-probabilities over environment actions, plus blend statistics) and ``get_value``. The shared
methods below turn that into sampling, log-probabilities and entropies, so PPO, IQL and the
evaluation treat the neural and the BlendRL agent identically. ``neural`` is the neural state as
the environment gives it (float32 vectors, uint8 frames) or frames already scaled by
:func:`~blendrl.agents.networks.scale_frames`; never unscaled float frames.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class Policy(NamedTuple):
    log_probs: torch.Tensor
    """[B, A] log pi(a|s) over environment actions."""
    logic_weight: torch.Tensor | None
    """[B] blend weight of the logic actor (None for a purely neural agent)."""
    blend_entropy: torch.Tensor | None
    """[B] entropy of the blend weights (None for a purely neural agent)."""


class AgentStep(NamedTuple):
    action: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    value: torch.Tensor
    logic_weight: torch.Tensor | None
    blend_entropy: torch.Tensor | None


class Agent(nn.Module):
    """Shared behaviour; subclasses implement ``policy``, ``get_value`` and ``optimizer_param_groups``."""

    def policy(self, logic: torch.Tensor, neural: torch.Tensor) -> Policy:  # pragma: no cover
        raise NotImplementedError

    def get_value(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def optimizer_param_groups(self, lrs: dict[str, float]) -> list[dict]:  # pragma: no cover
        raise NotImplementedError

    def policy_and_value(self, logic: torch.Tensor, neural: torch.Tensor) -> tuple[Policy, torch.Tensor]:
        """``policy`` and ``get_value`` together; agents whose actor and critic share a trunk
        override it to run the trunk once."""
        return self.policy(logic, neural), self.get_value(logic, neural)

    def get_action_and_value(self, logic: torch.Tensor, neural: torch.Tensor,
                             action: torch.Tensor | None = None) -> AgentStep:
        """Sample an action (or score the given one) and return what PPO needs.

        The same numbers as ``torch.distributions.Categorical(logits=log_probs)`` (sample, log_prob,
        entropy; tested), without its per-call construction and validation, which cost more than
        the whole logic actor at batch 1. ``log_probs`` rows are normalised by every ``policy``.
        """
        pol, value = self.policy_and_value(logic, neural)
        log_probs = pol.log_probs
        probs = log_probs.exp()
        if action is None:
            action = torch.multinomial(probs, 1).squeeze(1)
        log_prob = log_probs.gather(1, action.long().unsqueeze(1)).squeeze(1)
        entropy = -(probs * log_probs).sum(dim=1)
        return AgentStep(action, log_prob, entropy, value, pol.logic_weight, pol.blend_entropy)

    def clause_values(self, logic: torch.Tensor) -> list[tuple[str, float]] | None:
        """(clause text, how much it fires) of each rule at one logic state ``[O, F]``, for an
        agent with rules (what an evaluation video shows beside the frame); None otherwise."""
        return None

    def action_probs(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor:
        return self.policy(logic, neural).log_probs.exp()

    def log_prob(self, logic: torch.Tensor, neural: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(action|s) for given actions ``[B]`` (used by IQL's AWR loss)."""
        log_probs = self.policy(logic, neural).log_probs
        return log_probs.gather(1, action.long().unsqueeze(1)).squeeze(1)

    @torch.no_grad()
    def act(self, logic: torch.Tensor, neural: torch.Tensor, deterministic: bool = True,
            uniforms: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Actions for evaluation, and the logic weight: the most probable action
        (``deterministic``), else a sample — by inverse CDF from the given ``uniforms`` ``[B]`` in
        [0, 1) (the first action whose cumulative probability exceeds ``u``), or from torch's
        global generator when they are not given."""
        pol = self.policy(logic, neural)
        if deterministic:
            action = pol.log_probs.argmax(dim=1)
        elif uniforms is not None:
            action = inverse_cdf_sample(pol.log_probs.exp(), uniforms)
        else:
            action = torch.multinomial(pol.log_probs.exp(), 1).squeeze(1)
        return action, pol.logic_weight


def inverse_cdf_sample(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Row ``b``'s action: the number of actions whose cumulative probability is ``<= u_b * total``
    (``total`` the row's sum, 1 up to rounding), so ``P(a) = probs[b, a]`` for ``u ~ U[0, 1)`` and
    an action of probability 0 is never drawn."""
    cdf = probs.cumsum(dim=1)
    threshold = uniforms.to(cdf.dtype) * cdf[:, -1]
    action = (cdf <= threshold.unsqueeze(1)).sum(dim=1)
    return action.clamp_(max=probs.shape[1] - 1)
