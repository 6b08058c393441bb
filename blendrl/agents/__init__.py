"""Agents: the neural actor-critic and the BlendRL agent, with one shared interface (base.Agent)."""

from blendrl.agents.base import Agent, AgentStep, Policy
from blendrl.agents.blendrl import ACTOR_MODES, BLEND_FUNCTIONS, BLENDER_MODES, BlendRLAgent
from blendrl.agents.neural import ActorCriticNet, NeuralAgent

__all__ = ["Agent", "AgentStep", "Policy", "NeuralAgent", "ActorCriticNet", "BlendRLAgent",
           "ACTOR_MODES", "BLENDER_MODES", "BLEND_FUNCTIONS"]
