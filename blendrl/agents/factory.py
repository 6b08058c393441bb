"""Building an agent from command-line options, shared by the online and offline scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from blendrl.agents.base import Agent
from blendrl.agents.blendrl import BlendRLAgent
from blendrl.agents.neural import NeuralAgent
from blendrl.envs.base import EnvSpec
from blendrl.methods import METHOD_INFO
from blendrl.checkpoints import RESUME_FREE
from blendrl.validation import in_range


@dataclass
class BlendRLFields:
    """The BlendRL agent's options; mixed into the Args of both BlendRL scripts."""

    rules: str = "default"
    """rule set: a name under blendrl/envs/{env}/rules/ or a path to a rule-set folder"""
    actor_mode: Literal["hybrid", "logic", "neural"] = "hybrid"
    """hybrid blends the neural and logic actors; logic / neural uses one of them alone"""
    blender_mode: Literal["logic", "neural"] = "logic"
    """the blender: the rule set's blender clauses (logic) or a small network of its own (neural)"""
    neural_blender_input: Literal["logic", "neural"] = "logic"
    """what a neural blender reads: the logic state (an MLP) or the neural state (the BlendRL
    reference: a Nature CNN of its own on frames)"""
    blend_function: Literal["softmax", "gumbel_softmax"] = "softmax"
    """how the blender's two logits become blend weights"""
    soft_or: Literal["boltzmann", "logsumexp"] = "boltzmann"
    """the reasoner's soft OR: boltzmann (sum_i x_i softmax(x/T)_i, never above the max) or
    logsumexp (the BlendRL reference: T log sum_i exp(x_i/T), divided by the max where above 1); T = 0.01"""
    clause_weights: Literal["sigmoid", "softmax"] = "sigmoid"
    """clause weights: sigmoid (one weight per clause, from 0.98) or softmax (the BlendRL reference:
    an m x C matrix from N(0, 1), softmax over the clauses, m = the program's head predicates)"""
    critic: Literal["neural", "blended"] = "neural"
    """PPO's value: neural (the neural critic on the neural state) or blended (the BlendRL reference:
    w_n V_neural(neural state) + w_l V_logic(logic state)); IQL uses its own critics, not this one"""
    logic_actions: Literal["all", "rules"] = "all"
    """the logic actor's actions: all env actions (those without rules get the false rule's logit)
    or rules (the reference's reduced action set: probability 0 outside the actions the rules name)"""
    logic_lr: Annotated[float, in_range("(0, inf)")] = 2.5e-4
    """learning rate of the logic actor's clause weights (BlendRL's default)"""
    blender_lr: Annotated[float, in_range("(0, inf)")] = 2.5e-4
    """learning rate of the blender (BlendRL's default)"""
    compile_logic: Annotated[bool, RESUME_FREE] = False
    """run the logic actor, blender and mixture through torch.compile: their many tiny ops fuse into
    a few kernels (at batch 1 on Atari the BlendRL action then costs ~1.36x the neural one instead
    of ~1.46x, bench/bench_agents.py); the first calls compile for tens of seconds and need a C++
    compiler"""


def build_agent(spec: EnvSpec, blend: BlendRLFields | None, hidden: int = 64) -> Agent:
    """A NeuralAgent when ``blend`` is None, else a BlendRLAgent with those options."""
    if blend is None:
        return NeuralAgent(spec, hidden)
    return BlendRLAgent(spec, rules=blend.rules, actor_mode=blend.actor_mode,
                        blender_mode=blend.blender_mode, blend_function=blend.blend_function,
                        hidden=hidden, compile_logic=blend.compile_logic, soft_or=blend.soft_or,
                        clause_weights=blend.clause_weights, critic=blend.critic,
                        logic_actions=blend.logic_actions,
                        neural_blender_input=blend.neural_blender_input)


def blend_fields(method: str, args: object) -> BlendRLFields | None:
    """The BlendRL fields of ``args`` when ``method`` is a BlendRL method of the method table
    (:mod:`blendrl.methods`), else None; a BlendRL method given Args without them is a programming
    error."""
    if not METHOD_INFO[method].blendrl:
        return None
    if not isinstance(args, BlendRLFields):
        raise TypeError(f"method {method!r} is a BlendRL method: its Args need the BlendRL fields, "
                        f"got {type(args).__name__}")
    return args


def learning_rates(neural_lr: float, blend: BlendRLFields | None) -> dict[str, float]:
    """Per-parameter-group learning rates for ``Agent.optimizer_param_groups``."""
    lrs = {"neural": neural_lr}
    if blend is not None:
        lrs.update(logic=blend.logic_lr, blender=blend.blender_lr)
    return lrs
