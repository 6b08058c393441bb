"""The BlendRL agent: pi(a|s) = w_n(s) pi_n(a|s) + w_l(s) pi_l(a|s).

- pi_n: the neural actor of :class:`~blendrl.agents.neural.ActorCriticNet` on the neural state;
- pi_l: a :class:`~blendrl.logic.LogicActor` on the logic state (rules with learnable clause weights);
- (w_n, w_l): the blender. ``logic`` (default): the rule set's blender clauses give soft truth
  values v of ``neural_agent`` / ``logic_agent``, turned into logits ``logit(clip(v, 0.01, 0.99))``
  (as in the BlendRL reference implementation); they are evaluated in the logic actor's forward
  pass (one reasoner over both clause files, valuation atoms computed once); ``neural``: a small
  network of its own gives the two logits, an MLP on the logic state (``neural_blender_input``
  ``logic``, default) or on the neural state (``neural``, the reference: a Nature CNN on frames). ``blend_function`` softmax (default) or gumbel_softmax turns logits into weights.
- ``actor_mode``: ``hybrid`` blends; ``logic`` / ``neural`` use one actor alone (w fixed to 1).
- ``critic``: ``neural`` (default) -- V is the neural critic on the neural state; ``blended`` (the
  BlendRL reference) -- ``V = w_n V_neural(neural) + w_l V_logic(logic)`` with the policy's blend
  weights (so the value loss also trains the blender) and ``V_logic`` a ReLU MLP on the flattened
  logic state (trained at the neural learning rate, as in the reference).
- ``soft_or``, ``clause_weights`` (the reasoner's semantics, :mod:`blendrl.logic.reasoner`) and
  ``logic_actions`` (the logic actor's action set, :data:`blendrl.logic.actors.ACTION_SETS`).
- ``compile_logic``: run everything but the neural network (logic actor, blender, mixture) through
  ``torch.compile``: its many small ops become a few fused kernels. The first calls compile (tens
  of seconds, a C++ compiler needed); worth it for long runs at small batches. The results equal
  the eager ones up to float rounding, except that a ``gumbel_softmax`` blend in training draws its
  noise from inductor's generator (seeded by torch's, but not the eager draws).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blendrl.agents.base import Agent, Policy
from blendrl.agents.networks import (LogicStateValue, MLPEncoder, OutputLinear, layer_init,
                                     make_encoder)
from blendrl.agents.neural import ActorCriticNet
from blendrl.envs.base import EnvSpec

ACTOR_MODES = ("hybrid", "logic", "neural")
BLENDER_MODES = ("logic", "neural")
BLEND_FUNCTIONS = ("softmax", "gumbel_softmax")
CRITICS = ("neural", "blended")
BLENDER_INPUTS = ("logic", "neural")
_LOGIT_EPS = 0.01


class NeuralBlender(nn.Module):
    """Two blend logits (neural, logic) from a network of its own: an MLP on the flattened logic
    state (``source="logic"``), or on the neural state (``source="neural"``, the BlendRL
    reference: a Nature CNN of its own on frames, an MLP on vectors)."""

    def __init__(self, spec: EnvSpec, hidden: int = 64, source: str = "logic"):
        super().__init__()
        if source == "logic":
            n_obj, n_feat = spec.logic_shape
            self.encoder = MLPEncoder(n_obj * n_feat, hidden)
        else:
            self.encoder = make_encoder(spec, hidden)
        self.out = layer_init(OutputLinear(self.encoder.out_dim, 2), std=0.01)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(state))


_SEPARATE_REASONER_KEYS = {"logic_actor.reasoner.raw_weights": "logic_actor.reasoner.raw_weights.0",
                            "blender.reasoner.raw_weights": "logic_actor.reasoner.raw_weights.1"}
"""Clause-weight names of agents saved when the actor and the logic blender had a reasoner each."""


def _rename_separate_reasoner_keys(module, state_dict, prefix, *args) -> None:
    """Load a state dict of that layout (the same weights under their earlier names)."""
    for old, new in _SEPARATE_REASONER_KEYS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class BlendRLAgent(Agent):
    def __init__(self, spec: EnvSpec, rules: str = "default", actor_mode: str = "hybrid",
                 blender_mode: str = "logic", blend_function: str = "softmax", hidden: int = 64,
                 reasoner_temperature: float = 0.01, compile_logic: bool = False,
                 soft_or: str = "boltzmann", clause_weights: str = "sigmoid", critic: str = "neural",
                 logic_actions: str = "all", neural_blender_input: str = "logic"):
        super().__init__()
        from blendrl.envs import load_rule_set
        from blendrl.logic import ACTION_SETS, CLAUSE_WEIGHTS, SOFT_ORS, LogicActor

        for name, value, valid in (("actor_mode", actor_mode, ACTOR_MODES),
                                   ("blender_mode", blender_mode, BLENDER_MODES),
                                   ("blend_function", blend_function, BLEND_FUNCTIONS),
                                   ("soft_or", soft_or, SOFT_ORS),
                                   ("clause_weights", clause_weights, CLAUSE_WEIGHTS),
                                   ("critic", critic, CRITICS),
                                   ("logic_actions", logic_actions, ACTION_SETS),
                                   ("neural_blender_input", neural_blender_input, BLENDER_INPUTS)):
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
        self.spec = spec
        self.actor_mode = actor_mode
        self.blender_mode = blender_mode
        self.blend_function = blend_function
        self.semantics = {"soft_or": soft_or, "clause_weights": clause_weights, "critic": critic,
                          "logic_actions": logic_actions}
        """The reasoner's, the critic's and the logic actor's choices (printed by program_text)."""
        if blender_mode == "neural":
            self.semantics["neural_blender_input"] = neural_blender_input
        self.net = ActorCriticNet(spec, hidden)
        self.rule_set = load_rule_set(spec.name, rules)
        # a logic blender's clauses are evaluated in the logic actor's forward pass (shared atoms)
        self.logic_actor = LogicActor(self.rule_set, temperature=reasoner_temperature,
                                      with_blender=blender_mode == "logic", soft_or=soft_or,
                                      clause_weights=clause_weights, action_set=logic_actions)
        self.blender = NeuralBlender(spec, hidden, neural_blender_input) if blender_mode == "neural" else None
        self._blender_reads_neural = self.blender is not None and neural_blender_input == "neural"
        self.logic_critic = LogicStateValue(spec, hidden) if critic == "blended" else None
        # everything of the policy but the neural network: compiled, it is a few fused kernels
        self._compiled_mix = torch.compile(self._mix, dynamic=True) if compile_logic else None
        # the fixed blend weights (w_neural, w_logic) of a one-actor mode, made once: a tensor
        # built from a list on every pass is a host-to-device copy per pass on a GPU
        # (non-persistent buffers: moved by .to(device), not in the state dict)
        if actor_mode != "hybrid":
            fixed = [1.0, 0.0] if actor_mode == "neural" else [0.0, 1.0]
            self.register_buffer("_fixed_weights", torch.tensor(fixed), persistent=False)
        self.register_load_state_dict_pre_hook(_rename_separate_reasoner_keys)

    def actor_and_blend_logits(self, logic: torch.Tensor, neural: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pi_l ``[B, A]``, the blend logits ``[B, 2]`` of (neural, logic)); unchecked shape.
        ``neural`` is needed by a neural blender that reads the neural state."""
        probs, values = self.logic_actor.outputs(logic)
        if self.blender is None:
            return probs, torch.logit(values.clamp(_LOGIT_EPS, 1.0 - _LOGIT_EPS))
        if self._blender_reads_neural:
            if neural is None:
                raise ValueError("this agent's neural blender reads the neural state: pass it")
            return probs, self.blender(neural)
        return probs, self.blender(logic)

    def blend_logits(self, logic: torch.Tensor, neural: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 2] logits of (neural, logic)."""
        self.logic_actor.check_state(logic)
        return self.actor_and_blend_logits(logic, neural)[1]

    def blend_weights(self, logic: torch.Tensor, neural: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 2] weights (w_neural, w_logic) summing to 1."""
        return self._weights(self.blend_logits(logic, neural))

    def _weights(self, logits: torch.Tensor) -> torch.Tensor:
        if self.blend_function == "gumbel_softmax" and self.training:
            return F.gumbel_softmax(logits, tau=1.0, dim=1)
        return torch.softmax(logits, dim=1)

    def policy(self, logic: torch.Tensor, neural: torch.Tensor) -> Policy:
        if self.actor_mode == "logic":
            return self._policy(logic, None, neural)
        return self._policy(logic, self.net.logits(neural), neural)

    def get_value(self, logic: torch.Tensor, neural: torch.Tensor) -> torch.Tensor:
        if self.logic_critic is None or self.actor_mode == "neural":
            return self.net.value(neural)
        if self.actor_mode == "logic":
            return self.logic_critic(logic)
        self.logic_actor.check_state(logic)
        w_logic = self._weights(self.actor_and_blend_logits(logic, neural)[1])[:, 1]
        return torch.lerp(self.net.value(neural), self.logic_critic(logic), w_logic)

    def policy_and_value(self, logic: torch.Tensor, neural: torch.Tensor) -> tuple[Policy, torch.Tensor]:
        if self.actor_mode == "logic":
            pol = self._policy(logic, None, neural)
            value = self.net.value(neural) if self.logic_critic is None else self.logic_critic(logic)
            return pol, value
        logits, value = self.net(neural)
        pol = self._policy(logic, logits, neural)
        if self.logic_critic is not None and self.actor_mode == "hybrid":
            # w_n V_n + w_l V_l with the policy's own blend weights (w_n = 1 - w_l)
            value = torch.lerp(value, self.logic_critic(logic), pol.logic_weight)
        return pol, value

    def _policy(self, logic: torch.Tensor, neural_logits: torch.Tensor | None,
                neural: torch.Tensor) -> Policy:
        """The blended policy given the neural actor's logits (None in ``logic`` actor mode)."""
        self.logic_actor.check_state(logic)
        return Policy(*(self._compiled_mix or self._mix)(logic, neural_logits,
                                                         neural if self._blender_reads_neural else None))

    def _mix(self, logic: torch.Tensor, neural_logits: torch.Tensor | None, neural: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log pi, w_logic, blend entropy): the logic actor, the blender and the mixture."""
        batch = logic.shape[0]
        if self.actor_mode == "neural":
            weights = self._fixed_weights.to(logic.dtype).expand(batch, 2)
            log_probs = torch.log_softmax(neural_logits, dim=1)
        elif self.actor_mode == "logic":
            weights = self._fixed_weights.to(logic.dtype).expand(batch, 2)
            log_probs = torch.log(self.logic_actor.outputs(logic)[0].clamp_min(1e-12))
        else:
            logic_probs, blend_logits = self.actor_and_blend_logits(logic, neural)
            weights = self._weights(blend_logits)
            probs = torch.addcmul(weights[:, 1:] * logic_probs, weights[:, :1],
                                  torch.softmax(neural_logits, dim=1))
            log_probs = torch.log(probs.clamp_min(1e-12))
        # -w log w; the clamp keeps the gradient finite where a weight is exactly 0
        blend_entropy = torch.special.entr(weights.clamp_min(1e-12)).sum(dim=1)
        return log_probs, weights[:, 1], blend_entropy

    def optimizer_param_groups(self, lrs: dict[str, float]) -> list[dict]:
        """Groups: ``neural`` (neural actor + critic, and the logic critic of a blended critic, as in
        the reference), ``logic`` (clause weights), ``blender``."""
        neural = list(self.net.parameters())
        if self.logic_critic is not None:
            neural += list(self.logic_critic.parameters())
        groups = [
            {"params": neural, "lr": lrs["neural"], "name": "neural"},
            {"params": self.logic_actor.actor_parameters(), "lr": lrs["logic"], "name": "logic"},
            {"params": self.logic_actor.blender_parameters() if self.blender is None
             else list(self.blender.parameters()), "lr": lrs["blender"], "name": "blender"},
        ]
        return [g for g in groups if g["params"]]

    @torch.no_grad()
    def clause_values(self, logic: torch.Tensor) -> list[tuple[str, float]]:
        """The actor clauses' text and values at one logic state ``[O, F]``: each clause's weight
        times its truest grounding's body (a separate pass; the policy is not computed)."""
        return self.logic_actor.clause_values(logic)

    def program_text(self) -> str:
        """The learned program: the semantics, then actor and blender clauses with their current weights."""
        text = "# semantics: " + " ".join(f"{k}={v}" for k, v in self.semantics.items())
        text += "\n# actor\n" + self.logic_actor.program_text()
        if self.blender_mode == "logic":
            text += "\n# blender\n" + self.logic_actor.blender_program_text()
        return text
