"""Valuation functions of Seaquest (object rows ``(visible, x, y, w, h, value)``, pixels).

Each function takes object rows ``[..., 6]`` and returns truth values ``[...]`` in [0, 1] as if its
objects were present: the reasoner multiplies every atom by its objects' ``visible`` flags (the
spec's presence feature), so an atom about an empty slot is exactly 0 -- except ``oxygen_low``,
which reads an absent oxygen bar as an empty tank. Registered explicitly in
:data:`VALUATIONS` (name = predicate).
Calibrated on real states: the surface is at player y = 46, the diver lanes are 24 pixels apart
(diver centres y = 74.5, 98.5, ...), the oxygen level runs from 64 (full) down to 0.
"""

from __future__ import annotations

from typing import Callable

import torch

from blendrl.logic.geometry import distance, greater, offset_x, offset_y, proximity, value, visible, within
from blendrl.logic.ruleset import sees_absent_objects

OXYGEN_LOW = 16.0
"""Oxygen level (of 64) below which the oxygen is "low"."""

LANE_TOLERANCE = 6.0
"""Vertical offset (pixels) within which a diver is at the player's depth (lanes are 24 apart)."""

SIDE_MARGIN = 4.0
"""Horizontal offset (pixels) beyond which a diver is to the left / right."""

NEAREST_SCALE = 100.0
"""Swimming to a diver is ``exp(-offset / this)`` true, so the nearest diver wins the soft OR."""

DANGER_RADIUS = 32.0
"""Distance of centres (pixels) within which an enemy or torpedo is close."""


@sees_absent_objects
def oxygen_low(bar: torch.Tensor) -> torch.Tensor:
    """The oxygen level is below 16 of 64. OCAtari drops the oxygen bar when the tank is empty, so
    an absent bar reads as level 0 (true): this function sees empty slots (no presence gate)."""
    return greater(OXYGEN_LOW, value(bar) * visible(bar), 2.0)


def diver_collected(slot: torch.Tensor) -> torch.Tensor:
    """This collected-diver slot is filled (``collecteddiver6``: six divers aboard): 1 here, and the
    reasoner's presence gate makes it 0 for an empty slot."""
    return torch.ones_like(slot[..., 0])


def _toward(gap: torch.Tensor, margin: float) -> torch.Tensor:
    """The diver lies more than ``margin`` pixels off in the direction of ``gap``; the nearer, the truer."""
    return greater(gap, margin, 2.0) * proximity(gap, NEAREST_SCALE)


def diver_above(player: torch.Tensor, diver: torch.Tensor) -> torch.Tensor:
    """The diver swims higher than the player (the player is deeper); the nearer, the truer."""
    return _toward(offset_y(player, diver), LANE_TOLERANCE)


def diver_below(player: torch.Tensor, diver: torch.Tensor) -> torch.Tensor:
    """The diver swims deeper than the player; the nearer, the truer."""
    return _toward(offset_y(diver, player), LANE_TOLERANCE)


def diver_left(player: torch.Tensor, diver: torch.Tensor) -> torch.Tensor:
    """The diver is to the left of the player; the nearer, the truer."""
    return _toward(offset_x(player, diver), SIDE_MARGIN)


def diver_right(player: torch.Tensor, diver: torch.Tensor) -> torch.Tensor:
    """The diver is to the right of the player; the nearer, the truer."""
    return _toward(offset_x(diver, player), SIDE_MARGIN)


def same_depth(player: torch.Tensor, diver: torch.Tensor) -> torch.Tensor:
    """The diver is in the player's lane."""
    return within(offset_y(player, diver), LANE_TOLERANCE, 1.5)


def close_by_enemy(player: torch.Tensor, enemy: torch.Tensor) -> torch.Tensor:
    """An enemy (shark, submarine, torpedo) is within 32 pixels of the player."""
    return greater(DANGER_RADIUS, distance(player, enemy), 4.0)


VALUATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "oxygen_low": oxygen_low,
    "diver_collected": diver_collected,
    "diver_above": diver_above,
    "diver_below": diver_below,
    "diver_left": diver_left,
    "diver_right": diver_right,
    "same_depth": same_depth,
    "close_by_enemy": close_by_enemy,
}
