"""MountainCar-v0: drive an under-powered car up the right hill (gymnasium classic control).

Logic state ``[1, 2]``: row ``car`` = (position, velocity). Neural state: the 2-vector
observation, float32. Actions: ``left`` (0), ``noop`` (1), ``right`` (2). Reward -1 per step;
terminated at the flag (position >= 0.5); truncated after 200 steps.
"""

from __future__ import annotations

import numpy as np

from blendrl.envs.base import EnvSpec, VecEnv

SPEC = EnvSpec(
    name="mountaincar",
    gym_id="MountainCar-v0",
    objects=("car",),
    object_types=("car",),
    features=("pos", "vel"),
    neural_shape=(2,),
    neural_dtype=np.dtype(np.float32),
    action_names=("left", "noop", "right"),
    can_render=True,
    max_episode_steps=200,
)


def make_vec(num_envs: int, **options) -> VecEnv:
    """``num_envs`` copies; ``options`` (``video``) go to :func:`blendrl.envs.classic.make_classic_vec`."""
    from blendrl.envs.classic import make_classic_vec  # here: reading SPEC imports no torch

    return make_classic_vec(SPEC, num_envs, **options)
