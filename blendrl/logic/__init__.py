"""Differentiable logic: rule files, validation, grounding and the batched forward reasoner.

    from blendrl.envs import load_rule_set   # the environment hands its SPEC and valuations over
    from blendrl.logic import LogicActor, LogicBlender
    rs = load_rule_set("seaquest")           # or load_rule_set("mountaincar", "no_left"), or a folder
    probs = LogicActor(rs)(logic_state)      # [B, n_actions]
    v = LogicBlender(rs)(logic_state)        # [B, 2] (neural_agent, logic_agent)

Modules: :mod:`~blendrl.logic.syntax` (the language and its parser), :mod:`~blendrl.logic.ruleset`
(building and validation from a folder, a spec and valuation functions; this package knows no
game: the environments call :func:`build_rule_set`), :mod:`~blendrl.logic.grounding` (clauses -> index tensors),
:mod:`~blendrl.logic.reasoner` (forward chaining), :mod:`~blendrl.logic.actors` (actor, blender).
"""

from blendrl.logic.actors import ACTION_EPS, ACTION_SETS, NO_RULE_LOGIT, LogicActor, LogicBlender
from blendrl.logic.reasoner import CLAUSE_WEIGHTS, SOFT_ORS, ForwardReasoner, soft_or
from blendrl.logic.ruleset import (BLENDER_HEADS, RuleSet, action_of_predicate, build_rule_set,
                                   rule_set_folder, sees_absent_objects)
from blendrl.logic.syntax import RuleSetError

__all__ = ["build_rule_set", "rule_set_folder", "RuleSet", "RuleSetError", "LogicActor", "LogicBlender",
           "ForwardReasoner", "soft_or", "action_of_predicate", "BLENDER_HEADS", "ACTION_EPS",
           "NO_RULE_LOGIT", "ACTION_SETS", "SOFT_ORS", "CLAUSE_WEIGHTS", "sees_absent_objects"]
