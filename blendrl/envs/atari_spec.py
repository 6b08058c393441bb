"""The shape of an Atari game's state, the same for every game: the features of a logic-state row,
the frames of the neural state, the episode limit, ALE's actions, and the :class:`EnvSpec` of a
game from its object slots (:func:`atari_spec`).

Cheap to import (no torch, no OCAtari), so that the registry reads every game's ``SPEC`` without
them; :mod:`blendrl.envs.atari` builds the environments.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from blendrl.envs.base import EnvSpec

FEATURES: tuple[str, ...] = ("visible", "x", "y", "w", "h", "value")
"""Columns of an Atari logic state."""

FRAME_SKIP = 4
"""ALE frames per agent step."""

FRAME_SIZE = 84
"""Side of a preprocessed (square) frame."""

STACK = 4
"""Frames in the neural state, oldest first."""

MAX_EPISODE_STEPS = 27_000
"""Agent steps per episode at most: ALE's 108,000 frames / ``FRAME_SKIP``."""

ALE_FULL_ACTION_NAMES: tuple[str, ...] = (
    "noop", "fire", "up", "right", "left", "down", "upright", "upleft", "downright",
    "downleft", "upfire", "rightfire", "leftfire", "downfire", "uprightfire", "upleftfire",
    "downrightfire", "downleftfire",
)
"""Lower-cased ALE action meanings in ALE's order (the minimal set of the three games here)."""


def object_slots(counts: Sequence[tuple[str, int]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Slot names and slot types for ``(type, count)`` pairs, in that order.

    A type with one slot gives the slot name ``type`` (``"player"``); a type with ``n > 1`` slots
    gives ``type1`` .. ``typen`` (``"shark1"``, ..., ``"shark12"``).
    """
    names: list[str] = []
    types: list[str] = []
    for object_type, count in counts:
        if count < 1:
            raise ValueError(f"object type {object_type!r} needs at least one slot, got {count}")
        if object_type in types:
            raise ValueError(f"object type {object_type!r} listed twice")
        if count == 1:
            names.append(object_type)
        else:
            names.extend(f"{object_type}{k}" for k in range(1, count + 1))
        types.extend([object_type] * count)
    return tuple(names), tuple(types)


def atari_spec(name: str, gym_id: str, counts: Sequence[tuple[str, int]],
               action_names: tuple[str, ...] = ALE_FULL_ACTION_NAMES) -> EnvSpec:
    """The :class:`EnvSpec` of an Atari game whose logic state has the slots ``counts``."""
    objects, object_types = object_slots(counts)
    return EnvSpec(
        name=name,
        gym_id=gym_id,
        objects=objects,
        object_types=object_types,
        features=FEATURES,
        neural_shape=(STACK, FRAME_SIZE, FRAME_SIZE),
        neural_dtype=np.dtype(np.uint8),
        action_names=action_names,
        max_episode_steps=MAX_EPISODE_STEPS,
        presence_feature="visible",
        has_lives=True,
        can_render=True,
    )
