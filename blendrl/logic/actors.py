"""The logic actor (rules -> a distribution over env actions) and the logic blender (rules -> w_n, w_l).

**Actor.** The value of an action predicate is the soft OR over its ground atoms (one atom for
arity 0). The score of env action ``a`` is the soft OR over the ground atoms of every action
predicate that maps to ``a`` (see :func:`~blendrl.logic.ruleset.action_of_predicate`) -- for arity-0
predicates simply the soft OR of their values -- turned into a logit ``logit(clamp(v, eps, 1 - eps))``
with ``eps = 0.01``; an env action with no action predicate gets the fixed low logit ``logit(eps)``
(the score of a false rule). The distribution is the softmax of these
logits: rows sum to 1, no probability is NaN, and its argmax is the action of the truest rule
(ties broken towards the lower action id). With ``action_set="rules"`` (the BlendRL reference's
reduced action set) the distribution covers only the env actions some action predicate maps to:
every other action has probability exactly 0. With the ``logsumexp`` soft OR, the action scores of
a state are divided by their maximum where it exceeds 1 (as the reasoner's atoms are).

**Blender.** The values ``[B, 2]`` of the built-in heads ``(neural_agent, logic_agent)`` in [0, 1];
the agent turns them into blend weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from blendrl.logic.grounding import FALSE_INDEX, GroundProgram, ground_program
from blendrl.logic.reasoner import (DEFAULT_INIT_WEIGHT, DEFAULT_TEMPERATURE, ForwardReasoner, SoftOrGroups,
                                    check_choice)
from blendrl.logic.ruleset import BLENDER_HEADS, RuleSet
from blendrl.logic.syntax import RuleSetError

ACTION_EPS = 0.01
"""Clamp of action values before the logit; also the value of an env action with no rule."""

NO_RULE_LOGIT = math.log(ACTION_EPS / (1.0 - ACTION_EPS))
"""The fixed logit of an env action that no action predicate maps to (= a false rule's)."""

ACTION_SETS = ("all", "rules")
"""``all``: every env action has a probability (those without rules the false rule's logit);
``rules``: only the env actions some action predicate maps to (the others get probability 0)."""


def _check_state(logic: torch.Tensor, rule_set: RuleSet) -> None:
    expected = rule_set.spec.logic_shape
    if logic.dim() != 3 or tuple(logic.shape[1:]) != expected:
        raise ValueError(f"logic state must have shape [B, {expected[0]}, {expected[1]}] for "
                         f"{rule_set.spec.name}, got {list(logic.shape)}")


def presence_feature(rule_set: RuleSet) -> int | None:
    """The logic-state column that says whether an object slot is filled (None: always filled)."""
    spec = rule_set.spec
    return None if spec.presence_feature is None else spec.feature_index(spec.presence_feature)


def _blender_program(rule_set: RuleSet) -> GroundProgram:
    if not rule_set.has_blender:
        raise RuleSetError("this rule set has no blender clauses (blender_clauses.txt); use a "
                           "neural blender or add the file", rule_set.folder)
    return ground_program(rule_set, rule_set.blender_clauses)


class LogicActor(nn.Module):
    """pi_l(a|s): the rule set's actor clauses as a distribution over the env's actions.

    With ``with_blender=True`` the reasoner also holds the blender clauses (program 1), so that
    :meth:`with_blend_values` gives the action distribution and the blender's values from one
    forward pass (valuation atoms shared, one forward chaining) -- what the BlendRL agent uses.
    The actor's and the blender's clause weights stay separate parameters
    (:meth:`actor_parameters`, :meth:`blender_parameters`).
    """

    def __init__(self, rule_set: RuleSet, temperature: float = DEFAULT_TEMPERATURE,
                 infer_steps: int | None = None, init_weight: float = DEFAULT_INIT_WEIGHT,
                 with_blender: bool = False, soft_or: str = "boltzmann", clause_weights: str = "sigmoid",
                 action_set: str = "all"):
        """``infer_steps`` defaults to the program's depth (the fewest steps that are exact);
        ``soft_or`` and ``clause_weights``: see :mod:`blendrl.logic.reasoner`; ``action_set``: see
        :data:`ACTION_SETS`."""
        super().__init__()
        check_choice("action_set", action_set, ACTION_SETS)
        self.rule_set = rule_set
        self.action_set = action_set
        self.program: GroundProgram = ground_program(rule_set, rule_set.actor_clauses)
        programs = [self.program, _blender_program(rule_set)] if with_blender else [self.program]
        self.with_blender = with_blender
        self.reasoner = ForwardReasoner(programs, temperature, infer_steps, init_weight,
                                        presence_feature(rule_set), soft_or, clause_weights)
        self.action_predicates = tuple(d.name for d in rule_set.actions)
        atoms = [self.reasoner.atoms_of(0, p) for p in self.action_predicates]
        self._predicates = SoftOrGroups(atoms, temperature, kind=soft_or)
        # env action a: every ground atom of the action predicates of a; the constant-false atom for
        # an action without rules (its logit is then logit(eps) = NO_RULE_LOGIT)
        per_action = [[i for k, a in enumerate(rule_set.action_ids) if a == action for i in atoms[k]]
                      or [FALSE_INDEX] for action in range(rule_set.spec.n_actions)]
        self._actions = SoftOrGroups(per_action, temperature, kind=soft_or)
        ruled = set(rule_set.action_ids)
        self._restricted = action_set == "rules" and len(ruled) < rule_set.spec.n_actions
        if self._restricted:  # -inf logits: probability exactly 0 outside the rules' actions
            self.register_buffer("_excluded_bias", torch.tensor(
                [0.0 if a in ruled else float("-inf") for a in range(rule_set.spec.n_actions)]),
                persistent=False)
        if with_blender:
            heads = [self.reasoner.index_of(1, (head, ())) for head in BLENDER_HEADS]
            self.register_buffer("_blender_heads", torch.tensor(heads, dtype=torch.long), persistent=False)

    def check_state(self, logic: torch.Tensor) -> None:
        """Raise ValueError unless ``logic`` is a batch of this environment's logic states."""
        _check_state(logic, self.rule_set)

    def outputs(self, logic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the action distribution, the blender values or None) from one reasoner pass, without
        checking the state's shape (see :meth:`check_state`); a pure tensor function. Always in
        float32: under autocast (offline ``--precision bf16``) bfloat16 matmuls would round pixel
        coordinates above 128 and soft truth values near 1 to steps of 2^-8, which the action
        logit ``logit(clamp(v))`` magnifies; the reasoner is cheap next to the CNNs."""
        if torch.is_autocast_enabled(logic.device.type):
            with torch.autocast(device_type=logic.device.type, enabled=False):
                return self.outputs(logic.float())
        values = self.reasoner(logic)
        probs = torch.softmax(self._logits(values), dim=1)
        return probs, values.index_select(1, self._blender_heads) if self.with_blender else None

    def action_values(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_action_predicates] soft truth values of the action predicates (declaration order)."""
        _check_state(logic, self.rule_set)
        return self._predicates(self.reasoner(logic))

    def action_logits(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_actions] the logits whose softmax is the action distribution."""
        _check_state(logic, self.rule_set)
        return self._logits(self.reasoner(logic))

    def _logits(self, values: torch.Tensor) -> torch.Tensor:
        scores = self._actions(values)
        logits = torch.logit(scores.clamp(ACTION_EPS, 1.0 - ACTION_EPS))
        if self._restricted:
            logits = logits + self._buffers["_excluded_bias"]
        return logits

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, n_actions] a probability distribution over the env's actions."""
        _check_state(logic, self.rule_set)
        return self.outputs(logic)[0]

    def with_blend_values(self, logic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``forward(logic)``, the blender's ``[B, 2]`` values of ``(neural_agent, logic_agent)``)
        from one pass; needs ``with_blender=True``."""
        if not self.with_blender:
            raise RuntimeError("this LogicActor was built without the blender clauses (with_blender=False)")
        _check_state(logic, self.rule_set)
        return self.outputs(logic)

    def actor_parameters(self) -> list[nn.Parameter]:
        """The actor clauses' weights."""
        return [self.reasoner.raw_weights[0]]

    def blender_parameters(self) -> list[nn.Parameter]:
        """The blender clauses' weights (none without ``with_blender``)."""
        return [self.reasoner.raw_weights[1]] if self.with_blender else []

    def program_text(self) -> str:
        """Each actor clause with its current weight, one per line."""
        return self.reasoner.program_text(0)

    def clause_values(self, logic: torch.Tensor) -> list[tuple[str, float]]:
        """Each actor clause's text and how much it fires at the state ``logic`` ``[O, F]``
        (:meth:`~blendrl.logic.reasoner.ForwardReasoner.clause_values`), in file order."""
        _check_state(logic.unsqueeze(0), self.rule_set)
        values = self.reasoner.clause_values(logic.unsqueeze(0).float(), 0)[0].tolist()
        return [(str(c), v) for c, v in zip(self.program.clauses, values)]

    def blender_program_text(self) -> str:
        """Each blender clause with its current weight, one per line (needs ``with_blender``)."""
        return self.reasoner.program_text(1)


class LogicBlender(nn.Module):
    """The rule set's blender clauses alone: ``[B, 2]`` soft truth of ``(neural_agent, logic_agent)``.

    (The BlendRL agent evaluates them together with the actor: ``LogicActor(with_blender=True)``.)
    """

    def __init__(self, rule_set: RuleSet, temperature: float = DEFAULT_TEMPERATURE,
                 infer_steps: int | None = None, init_weight: float = DEFAULT_INIT_WEIGHT,
                 soft_or: str = "boltzmann", clause_weights: str = "sigmoid"):
        super().__init__()
        self.rule_set = rule_set
        self.program = _blender_program(rule_set)
        self.reasoner = ForwardReasoner(self.program, temperature, infer_steps, init_weight,
                                        presence_feature(rule_set), soft_or, clause_weights)
        heads = [self.reasoner.index_of(0, (head, ())) for head in BLENDER_HEADS]
        self.register_buffer("_heads", torch.tensor(heads, dtype=torch.long), persistent=False)

    def forward(self, logic: torch.Tensor) -> torch.Tensor:
        """[B, 2] values of (neural_agent, logic_agent) in [0, 1]."""
        _check_state(logic, self.rule_set)
        return self.reasoner(logic)[:, self._heads]

    def program_text(self) -> str:
        """Each blender clause with its current weight, one per line."""
        return self.reasoner.program_text()
