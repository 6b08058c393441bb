"""CartPole-v1: balance a pole on a cart (gymnasium classic control).

Logic state ``[2, 2]``: row ``cart`` = (position, velocity), row ``pole`` = (angle in radians,
angular velocity). Neural state: the 4-vector observation, float32. Actions: ``left`` (0) and
``right`` (1). Truncated after 500 steps; terminated when the pole falls or the cart leaves.
"""

from __future__ import annotations

import numpy as np

from blendrl.envs.base import EnvSpec, VecEnv

SPEC = EnvSpec(
    name="cartpole",
    gym_id="CartPole-v1",
    objects=("cart", "pole"),
    object_types=("cart", "pole"),
    features=("pos", "vel"),
    neural_shape=(4,),
    neural_dtype=np.dtype(np.float32),
    action_names=("left", "right"),
    can_render=True,
    max_episode_steps=500,
)


def make_vec(num_envs: int, **options) -> VecEnv:
    """``num_envs`` copies; ``options`` (``video``) go to :func:`blendrl.envs.classic.make_classic_vec`."""
    from blendrl.envs.classic import make_classic_vec  # here: reading SPEC imports no torch

    return make_classic_vec(SPEC, num_envs, **options)
