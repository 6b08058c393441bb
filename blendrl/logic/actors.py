"""The logic actor (rules -> a distribution over env actions) and the logic blender (rules -> w_n, w_l).

**Actor.** The value of an action predicate is the soft OR over its ground atoms (one atom for
arity 0). The score of env action ``a`` is the soft OR over the ground atoms of every action
predicate that maps to ``a`` (see :func:`~blendrl.logic.ruleset.action_of_predicate`) -- for arity-0
predicates simply the soft OR of their values -- turned into a logit ``logit(clamp(v, eps, 1 - eps))``
with ``eps = 0.01``; an env action with no action predicate gets the fixed low logit ``logit(eps)``
(the score of a false rule). The distribution is the softmax of these
logits: rows sum to 1, no probability is 0 or NaN, and its argmax is the action of the truest rule
(ties broken towards the lower action id).

**Blender.** The values ``[B, 2]`` of the built-in heads ``(neural_agent, logic_agent)`` in [0, 1];
the agent turns them into blend weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blendrl.logic.grounding import FALSE_INDEX, GroundProgram, as_index_tensor, ground_program
from blendrl.logic.reasoner import DEFAULT_INIT_WEIGHT, DEFAULT_TEMPERATURE, ForwardReasoner, soft_or
from blendrl.logic.ruleset import BLENDER_HEADS, RuleSet
from blendrl.logic.syntax import RuleSetError

ACTION_EPS = 0.01
"""Clamp of action values before the logit; also the value of an env action with no rule."""

NO_RULE_LOGIT = math.log(ACTION_EPS / (1.0 - ACTION_EPS))
"""The fixed logit of an env action that no action predicate maps to (= a false rule's)."""


class _SoftOrGroups(nn.Module):
    """Soft OR over ragged groups of columns: ``[B, n] -> [B, n_groups]`` (a plain gather if 1 each)."""

    def __init__(self, groups: list[list[int]], temperature: float):
        super().__init__()
        index, mask = as_index_tensor(groups, pad=groups[0][0])  # pads point at a real column, masked
        self.temperature = temperature
        self._single = index.shape[1] == 1
        self.register_buffer("_index", index[:, 0].contiguous() if self._single else index, persistent=False)
        self.register_buffer("_padding", ~mask, persistent=False)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        if self._single:
            return values[:, self._index]
        return soft_or(values[:, self._index], self.temperature, self._padding)


def _check_state(logic: torch.Tensor, rule_set: RuleSet) -> None:
    expected = rule_set.spec.logic_shape
    if logic.dim() != 3 or tuple(logic.shape[1:]) != expected:
        raise ValueError(f"logic state must have shape [B, {expected[0]}, {expected[1]}] for "
                         f"{rule_set.spec.name}, got {list(logic.shape)}")


class LogicActor(nn.Module):
    """pi_l(a|s): the rule set's actor clauses as a distribution over the env's actions."""

    def __init__(self, rule_set: RuleSet, temperature: float = DEFAULT_TEMPERATURE,
                 infer_steps: int | None = None, init_weight: float = DEFAULT_INIT_WEIGHT):
        """``infer_steps`` defaults to the program's depth (the fewest steps that are exact)."""
        super().__init__()
        self.rule_set = rule_set
        self.program: GroundProgram = ground_program(rule_set, rule_set.actor_clauses)
        self.reasoner = ForwardReasoner(self.program, temperature, infer_steps, init_weight)
        self.action_predicates = tuple(d.name for d in rule_set.actions)
        atoms = [self.program.atoms_of(p) for p in self.action_predicates]
        self._predicates = _SoftOrGroups(atoms, temperature)
        # env action a: every ground atom of the action predicates of a; the constant-false atom for
        # an action without rules (its logit is then logit(eps) = NO_RULE_LOGIT)
        per_action = [[i for k, a in enumerate(rule_set.action_ids) if a == action for i in atoms[k]]
                      or [FALSE_INDEX] for action in range(rule_set.spec.n_actions)]
        self._actions = _SoftOrGroups(per_action, temperature)

    def action_values(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_action_predicates] soft truth values of the action predicates (declaration order)."""
        _check_state(logic, self.rule_set)
        return self._predicates(self.reasoner(logic))

    def action_logits(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_actions] the logits whose softmax is the action distribution."""
        _check_state(logic, self.rule_set)
        scores = self._actions(self.reasoner(logic))
        return torch.logit(scores.clamp(ACTION_EPS, 1.0 - ACTION_EPS))

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_actions] a probability distribution over the env's actions."""
        return torch.softmax(self.action_logits(logic), dim=1)

    def program_text(self) -> str:
        """Each actor clause with its current weight, one per line."""
        return self.reasoner.program_text()


class LogicBlender(nn.Module):
    """The rule set's blender clauses: ``[B, 2]`` soft truth of ``(neural_agent, logic_agent)``."""

    def __init__(self, rule_set: RuleSet, temperature: float = DEFAULT_TEMPERATURE,
                 infer_steps: int | None = None, init_weight: float = DEFAULT_INIT_WEIGHT):
        super().__init__()
        if not rule_set.has_blender:
            raise RuleSetError("this rule set has no blender clauses (blender_clauses.txt); use a "
                               "neural blender or add the file", rule_set.folder)
        self.rule_set = rule_set
        self.program = ground_program(rule_set, rule_set.blender_clauses)
        self.reasoner = ForwardReasoner(self.program, temperature, infer_steps, init_weight)
        heads = [self.program.index_of((head, ())) for head in BLENDER_HEADS]
        self.register_buffer("_heads", torch.tensor(heads, dtype=torch.long), persistent=False)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, 2] values of (neural_agent, logic_agent) in [0, 1]."""
        _check_state(logic, self.rule_set)
        return self.reasoner(logic)[:, self._heads]

    def program_text(self) -> str:
        """Each blender clause with its current weight, one per line."""
        return self.reasoner.program_text()
