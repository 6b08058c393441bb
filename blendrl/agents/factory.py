"""Building an agent from command-line options, shared by the online and offline scripts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from blendrl.agents.base import Agent
from blendrl.agents.blendrl import BlendRLAgent
from blendrl.agents.neural import NeuralAgent
from blendrl.envs.base import EnvSpec


@dataclass
class BlendRLFields:
    """The BlendRL agent's options; mixed into the Args of both BlendRL scripts."""

    rules: str = "default"
    """rule set: a name under blendrl/envs/{env}/rules/ or a path to a rule-set folder"""
    actor_mode: Literal["hybrid", "logic", "neural"] = "hybrid"
    """hybrid blends the neural and logic actors; logic / neural uses one of them alone"""
    blender_mode: Literal["logic", "neural"] = "logic"
    """the blender: the rule set's blender clauses (logic) or a small MLP on the logic state (neural)"""
    blend_function: Literal["softmax", "gumbel_softmax"] = "softmax"
    """how the blender's two logits become blend weights"""
    logic_lr: float = 2.5e-4
    """learning rate of the logic actor's clause weights (BlendRL's default)"""
    blender_lr: float = 2.5e-4
    """learning rate of the blender (BlendRL's default)"""
    compile_logic: bool = False
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
                        hidden=hidden, compile_logic=blend.compile_logic)


def learning_rates(neural_lr: float, blend: BlendRLFields | None) -> dict[str, float]:
    """Per-parameter-group learning rates for ``Agent.optimizer_param_groups``."""
    lrs = {"neural": neural_lr}
    if blend is not None:
        lrs.update(logic=blend.logic_lr, blender=blend.blender_lr)
    return lrs
