"""Seaquest (``ALE/Seaquest-v5`` through OCAtari, RAM mode): rescue divers, shoot enemies, surface for air.

Logic state ``float32 [42, 6]``, features ``(visible, x, y, w, h, value)`` (pixels of the
210x160 screen; an absent object is all zeros). Slots, by type (OCAtari category lower-cased):

* ``player`` (1): the player's submarine (absent while it explodes);
* ``shark1``..``shark12`` and ``submarine1``..``submarine12``: the enemies of the four lanes;
* ``diver1``..``diver4``: divers to collect (at most one per lane);
* ``enemymissile1``..``enemymissile4``: torpedoes of the enemy submarines (one per lane);
* ``surfacesubmarine`` (1): the enemy patrolling the surface (later in the game);
* ``playermissile`` (1): the player's torpedo;
* ``oxygenbar`` (1): the oxygen gauge, ``value`` = the oxygen level 0..64 (``w`` = min(level, 63));
  absent when the tank is empty;
* ``collecteddiver1``..``collecteddiver6``: the divers collected so far (one slot each).

These are all of OCAtari's non-HUD Seaquest categories at their maximum counts (the oxygen bar and
the collected divers are non-HUD objects in OCAtari, so ``hud=False``). Within a category the
present objects fill the first slots, in OCAtari's (lane) order.

Neural state: ``uint8 [4, 84, 84]``. Actions: the 18 ALE actions (``noop``, ``fire``, ``up``, ...).
Full game across lives, raw score, truncated after 27,000 agent steps (108,000 frames); sticky
actions 0.25. See :mod:`blendrl.envs.atari`.
"""

from __future__ import annotations

from blendrl.envs.atari_spec import atari_spec
from blendrl.envs.base import EnvSpec, VecEnv

SPEC: EnvSpec = atari_spec(
    "seaquest",
    "ALE/Seaquest-v5",
    (
        ("player", 1),
        ("shark", 12),
        ("submarine", 12),
        ("diver", 4),
        ("enemymissile", 4),
        ("surfacesubmarine", 1),
        ("playermissile", 1),
        ("oxygenbar", 1),
        ("collecteddiver", 6),
    ),
)

HUD = False
"""OCAtari's ``hud`` flag: the objects above are all non-HUD objects."""


def make_vec(num_envs: int, **options) -> VecEnv:
    """``num_envs`` copies; ``options`` go to :func:`blendrl.envs.atari.make_atari_vec`."""
    from blendrl.envs.atari import make_atari_vec  # here: reading SPEC imports no torch

    return make_atari_vec(SPEC, num_envs, hud=HUD, **options)
