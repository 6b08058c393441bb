"""Kangaroo (``ALE/Kangaroo-v5`` through OCAtari, RAM mode): climb to the joey, punch monkeys, dodge coconuts.

Logic state ``float32 [40, 6]``, features ``(visible, x, y, w, h, value)`` (pixels of the
210x160 screen; an absent object is all zeros; ``value`` is always 0 here). Slots, by type
(OCAtari category lower-cased):

* ``player`` (1): the mother kangaroo (``h`` shrinks while ducking / jumping);
* ``child`` (1): the joey at the top;
* ``monkey1``..``monkey4``: the monkeys climbing down the right side;
* ``fallingcoconut`` (1): the coconut dropped from the top by the big ape;
* ``throwncoconut1``..``throwncoconut3``: coconuts thrown by monkeys;
* ``fruit1``..``fruit3``: fruits to collect;
* ``bell`` (1): the bell that brings the fruits back;
* ``ladder1``..``ladder6``: the ladders of the current level;
* ``platform1``..``platform20``: the floors of the current level.

These are all of OCAtari's non-HUD Kangaroo categories at their maximum counts (``hud=False``).
Within a category the present objects fill the first slots, in OCAtari's order.

Neural state: ``uint8 [4, 84, 84]``. Actions: the 18 ALE actions (``noop``, ``fire``, ``up``, ...).
Full game across lives, raw score, truncated after 27,000 agent steps (108,000 frames); sticky
actions 0.25. See :mod:`blendrl.envs.atari`.
"""

from __future__ import annotations

from blendrl.envs.atari_spec import atari_spec
from blendrl.envs.base import EnvSpec, VecEnv

SPEC: EnvSpec = atari_spec(
    "kangaroo",
    "ALE/Kangaroo-v5",
    (
        ("player", 1),
        ("child", 1),
        ("monkey", 4),
        ("fallingcoconut", 1),
        ("throwncoconut", 3),
        ("fruit", 3),
        ("bell", 1),
        ("ladder", 6),
        ("platform", 20),
    ),
)

HUD = False
"""OCAtari's ``hud`` flag: score, time and lives are not needed by the logic."""


def make_vec(num_envs: int, **options) -> VecEnv:
    """``num_envs`` copies; ``options`` go to :func:`blendrl.envs.atari.make_atari_vec`."""
    from blendrl.envs.atari import make_atari_vec  # here: reading SPEC imports no torch

    return make_atari_vec(SPEC, num_envs, hud=HUD, **options)
