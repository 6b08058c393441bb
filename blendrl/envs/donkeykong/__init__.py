"""Donkey Kong (``ALE/DonkeyKong-v5`` through OCAtari, RAM mode): climb to the girlfriend, jump barrels.

Logic state ``float32 [18, 6]``, features ``(visible, x, y, w, h, value)`` (pixels of the
210x160 screen; an absent object is all zeros; ``value`` is always 0 here). Slots, by type
(OCAtari category lower-cased):

* ``player`` (1): Mario (``h`` 15 while jumping, else 17);
* ``donkeykong`` (1): the ape at the top;
* ``girlfriend`` (1): the goal at the top;
* ``hammer`` (1): the hammer (absent once it is taken);
* ``barrel1``..``barrel4``: the rolling barrels;
* ``ladder1``..``ladder10``: the ladders (fixed positions).

These are all of OCAtari's non-HUD Donkey Kong categories at their maximum counts (``hud=False``).
Within a category the present objects fill the first slots, in OCAtari's order.

Neural state: ``uint8 [4, 84, 84]``. Actions: the 18 ALE actions (``noop``, ``fire``, ``up``, ...).
Full game across lives, raw score, truncated after 27,000 agent steps (108,000 frames); sticky
actions 0.25. See :mod:`blendrl.envs.atari`.
"""

from __future__ import annotations

from blendrl.envs.atari_spec import atari_spec
from blendrl.envs.base import EnvSpec, VecEnv

SPEC: EnvSpec = atari_spec(
    "donkeykong",
    "ALE/DonkeyKong-v5",
    (
        ("player", 1),
        ("donkeykong", 1),
        ("girlfriend", 1),
        ("hammer", 1),
        ("barrel", 4),
        ("ladder", 10),
    ),
)

HUD = False
"""OCAtari's ``hud`` flag: score and lives are not needed by the logic."""


def make_vec(num_envs: int, **options) -> VecEnv:
    """``num_envs`` copies; ``options`` go to :func:`blendrl.envs.atari.make_atari_vec`."""
    from blendrl.envs.atari import make_atari_vec  # here: reading SPEC imports no torch

    return make_atari_vec(SPEC, num_envs, hud=HUD, **options)
