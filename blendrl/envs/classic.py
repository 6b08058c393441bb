"""Shared plumbing of the classic-control environments (gymnasium, vector observations).

The logic state of a classic-control environment is its observation vector reshaped into
``[n_objects, n_features]`` (bit-exact, float32); the neural state is the observation itself.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from blendrl.envs.base import EnvSpec, VecEnv


def make_classic_vec(spec: EnvSpec, num_envs: int) -> VecEnv:
    """A synchronous vector env of ``spec.gym_id`` whose observation is reshaped into objects."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be positive, got {num_envs}")
    vec = gym.make_vec(
        spec.gym_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        max_episode_steps=spec.max_episode_steps,
    )
    logic_shape = spec.logic_shape

    def split(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        neural = np.asarray(obs, dtype=np.float32)
        return neural.reshape(neural.shape[0], *logic_shape).copy(), neural

    def split_one(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        neural = np.asarray(obs, dtype=np.float32)
        return neural.reshape(logic_shape), neural

    return VecEnv(spec, vec, split, split_one)
