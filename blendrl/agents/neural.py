"""The neural actor-critic (CleanRL's PPO agents): MLPs on vectors, a shared Nature CNN on frames."""

from __future__ import annotations

import torch
from torch import nn

from blendrl.agents.base import Agent, Policy
from blendrl.agents.networks import Head, OutputLinear, layer_init, make_encoder
from blendrl.envs.base import EnvSpec


class ActorCriticNet(nn.Module):
    """Actor logits and critic value on the neural state.

    Vector states: separate two-layer tanh MLPs for actor and critic (CleanRL classic control).
    Frames: one Nature CNN trunk shared by a linear actor head and a linear critic head (CleanRL Atari).
    """

    def __init__(self, spec: EnvSpec, hidden: int = 64):
        super().__init__()
        self.shared = spec.is_image
        if self.shared:
            self.trunk = make_encoder(spec)
            self.actor_head = layer_init(OutputLinear(self.trunk.out_dim, spec.n_actions), std=0.01)
            self.critic_head = layer_init(OutputLinear(self.trunk.out_dim, 1), std=1.0)
        else:
            self.actor = Head(make_encoder(spec, hidden), spec.n_actions, std=0.01)
            self.critic = Head(make_encoder(spec, hidden), 1, std=1.0)

    def forward(self, neural: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(actor logits ``[B, A]``, value ``[B]``), running a shared trunk once."""
        if self.shared:
            features = self.trunk(neural)
            return self.actor_head(features), self.critic_head(features).squeeze(-1)
        return self.actor(neural), self.critic(neural).squeeze(-1)

    def logits(self, neural: torch.Tensor) -> torch.Tensor:
        """Actor logits ``[B, A]`` (compiled after :meth:`compile`)."""
        return self._pass("logits", self._logits)(neural)

    def value(self, neural: torch.Tensor) -> torch.Tensor:
        """Critic value ``[B]`` (compiled after :meth:`compile`)."""
        return self._pass("value", self._value)(neural)

    def compile(self, *args, **kwargs) -> None:
        """``torch.compile`` every pass of the network: ``forward`` (``nn.Module.compile``, which
        covers ``net(x)`` calls only) and the ``logits`` and ``value`` passes the agents call by
        name. State-dict keys are unchanged. Inside a region torch.compile already traces (a
        compiled IQL step) the passes are traced inline, as part of that graph."""
        super().compile(*args, **kwargs)
        self._compiled_passes = {"logits": torch.compile(self._logits, *args, **kwargs),
                                 "value": torch.compile(self._value, *args, **kwargs)}

    def _pass(self, name: str, eager):
        compiled = self.__dict__.get("_compiled_passes")
        if compiled is None or torch.compiler.is_compiling():
            return eager
        return compiled[name]

    def _logits(self, neural: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return self.actor_head(self.trunk(neural))
        return self.actor(neural)

    def _value(self, neural: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return self.critic_head(self.trunk(neural)).squeeze(-1)
        return self.critic(neural).squeeze(-1)


class NeuralAgent(Agent):
    """pi(a|s) = softmax(actor(neural state)); the logic state is ignored."""

    def __init__(self, spec: EnvSpec, hidden: int = 64):
        super().__init__()
        self.spec = spec
        self.net = ActorCriticNet(spec, hidden)

    def policy(self, logic: torch.Tensor, neural: torch.Tensor) -> Policy:
        return Policy(torch.log_softmax(self.net.logits(neural), dim=1), None, None)

    def get_value(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor:
        return self.net.value(neural)

    def policy_and_value(self, logic: torch.Tensor, neural: torch.Tensor) -> tuple[Policy, torch.Tensor]:
        logits, value = self.net(neural)
        return Policy(torch.log_softmax(logits, dim=1), None, None), value

    def optimizer_param_groups(self, lrs: dict[str, float]) -> list[dict]:
        return [{"params": list(self.parameters()), "lr": lrs["neural"], "name": "neural"}]
