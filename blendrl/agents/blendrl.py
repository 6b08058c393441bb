"""The BlendRL agent: pi(a|s) = w_n(s) pi_n(a|s) + w_l(s) pi_l(a|s).

- pi_n: the neural actor of :class:`~blendrl.agents.neural.ActorCriticNet` on the neural state;
- pi_l: a :class:`~blendrl.logic.LogicActor` on the logic state (rules with learnable clause weights);
- (w_n, w_l): the blender. ``logic`` (default): the rule set's blender clauses give soft truth
  values v of ``neural_agent`` / ``logic_agent``, turned into logits ``logit(clip(v, 0.01, 0.99))``
  (as in the BlendRL reference implementation); ``neural``: a small MLP on the logic state gives
  the two logits. ``blend_function`` softmax (default) or gumbel_softmax turns logits into weights.
- ``actor_mode``: ``hybrid`` blends; ``logic`` / ``neural`` use one actor alone (w fixed to 1).
- The critic is the neural critic on the neural state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blendrl.agents.base import Agent, Policy
from blendrl.agents.networks import MLPEncoder, layer_init
from blendrl.agents.neural import ActorCriticNet
from blendrl.envs.base import EnvSpec

ACTOR_MODES = ("hybrid", "logic", "neural")
BLENDER_MODES = ("logic", "neural")
BLEND_FUNCTIONS = ("softmax", "gumbel_softmax")
_LOGIT_EPS = 0.01


class NeuralBlender(nn.Module):
    """Two blend logits (neural, logic) from an MLP on the flattened logic state."""

    def __init__(self, spec: EnvSpec, hidden: int = 64):
        super().__init__()
        n_obj, n_feat = spec.logic_shape
        self.encoder = MLPEncoder(n_obj * n_feat, hidden)
        self.out = layer_init(nn.Linear(hidden, 2), std=0.01)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(logic))


class BlendRLAgent(Agent):
    def __init__(self, spec: EnvSpec, rules: str = "default", actor_mode: str = "hybrid",
                 blender_mode: str = "logic", blend_function: str = "softmax", hidden: int = 64,
                 reasoner_temperature: float = 0.01):
        super().__init__()
        from blendrl.logic import LogicActor, LogicBlender, load_rule_set

        for name, value, valid in (("actor_mode", actor_mode, ACTOR_MODES),
                                   ("blender_mode", blender_mode, BLENDER_MODES),
                                   ("blend_function", blend_function, BLEND_FUNCTIONS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        self.spec = spec
        self.actor_mode = actor_mode
        self.blender_mode = blender_mode
        self.blend_function = blend_function
        self.net = ActorCriticNet(spec, hidden)
        self.rule_set = load_rule_set(spec.name, rules)
        self.logic_actor = LogicActor(self.rule_set, temperature=reasoner_temperature)
        if blender_mode == "logic":
            self.blender = LogicBlender(self.rule_set, temperature=reasoner_temperature)
        else:
            self.blender = NeuralBlender(spec, hidden)

    def blend_logits(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, 2] logits of (neural, logic)."""
        out = self.blender(logic)
        if self.blender_mode == "logic":
            return torch.logit(out.clamp(_LOGIT_EPS, 1.0 - _LOGIT_EPS))
        return out

    def blend_weights(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, 2] weights (w_neural, w_logic) summing to 1."""
        logits = self.blend_logits(logic)
        if self.blend_function == "gumbel_softmax" and self.training:
            return F.gumbel_softmax(logits, tau=1.0, dim=1)
        return torch.softmax(logits, dim=1)

    def policy(self, logic: torch.Tensor, neural: torch.Tensor) -> Policy:
        batch = logic.shape[0]
        if self.actor_mode == "neural":
            weights = logic.new_tensor([1.0, 0.0]).expand(batch, 2)
            log_probs = torch.log_softmax(self.net.logits(neural), dim=1)
        elif self.actor_mode == "logic":
            weights = logic.new_tensor([0.0, 1.0]).expand(batch, 2)
            log_probs = torch.log(self.logic_actor(logic).clamp_min(1e-12))
        else:
            weights = self.blend_weights(logic)
            probs = torch.addcmul(weights[:, 1:] * self.logic_actor(logic), weights[:, :1],
                                  torch.softmax(self.net.logits(neural), dim=1))
            log_probs = torch.log(probs.clamp_min(1e-12))
        blend_entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum(dim=1)
        return Policy(log_probs, weights[:, 1], blend_entropy)

    def get_value(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor:
        return self.net.value(neural)

    def optimizer_param_groups(self, lrs: dict[str, float]) -> list[dict]:
        """Groups: ``neural`` (neural actor + critic), ``logic`` (clause weights), ``blender``."""
        groups = [
            {"params": list(self.net.parameters()), "lr": lrs["neural"], "name": "neural"},
            {"params": list(self.logic_actor.parameters()), "lr": lrs["logic"], "name": "logic"},
            {"params": list(self.blender.parameters()), "lr": lrs["blender"], "name": "blender"},
        ]
        return [g for g in groups if g["params"]]

    def program_text(self) -> str:
        """The learned program: actor and blender clauses with their current weights."""
        text = "# actor\n" + self.logic_actor.program_text()
        if self.blender_mode == "logic":
            text += "\n# blender\n" + self.blender.program_text()
        return text
