"""Valuation functions of Donkey Kong (object rows ``(visible, x, y, w, h, value)``, pixels).

Each function takes object rows ``[..., 6]`` and returns truth values ``[...]`` in [0, 1] as if its
objects were present: the reasoner multiplies every atom by its objects' ``visible`` flags (the
spec's presence feature), so an atom about an empty slot is exactly 0. Registered explicitly in
:data:`VALUATIONS` (name = predicate).
Calibrated on real states: Mario starts at (45, 176) and waits there until a button press starts
the game (no barrel rolls before); the girders slope, so a standing Mario's feet (y + h) are 0-5
pixels below the foot (y + h) of a ladder on his girder; he climbs when his centre is within a
pixel of the ladder's centre, and a climb ends with his feet 5-8 pixels above the ladder's top.
On a ladder, the diagonal actions (upleft, upright) climb; on a girder they walk.
"""

from __future__ import annotations

from typing import Callable

import torch

from blendrl.logic.geometry import X, Y, Ladders, distance, greater, near

START = (45.0, 176.0)
"""Mario's (x, y) at the start of a life."""

LADDER_FOOT_OFFSET = 2.5
"""Typical offset of Mario's feet below a ladder's foot on the same girder (pixels)."""

FLOOR_TOLERANCE = 7.0
"""A ladder stands on Mario's girder while his feet are within this of its foot + the offset."""

TOP_MARGIN = 4.5
"""Mario counts as on a ladder while his feet are below the ladder's top minus this (a climb ends
4.5 to 8 pixels above the top, depending on the girders' slope; see the rule set for why ending
early is harmless)."""

ALIGN_TOLERANCE = 1.5
"""Horizontal offset of centres (pixels) within which the player is aligned with a ladder (the
game lets it climb from an offset of up to 1 pixel)."""

ALIGN_SCALE = 0.25

NEAREST_SCALE = 100.0
"""Walking to a ladder is ``exp(-distance / this)`` true, so the nearest ladder wins the soft OR."""

DANGER_RADIUS = 28.0
"""Distance of centres (pixels) within which a barrel is close."""


LADDERS = Ladders(foot_offset=LADDER_FOOT_OFFSET, floor_tolerance=FLOOR_TOLERANCE,
                  top_margin=TOP_MARGIN, top_scale=0.25, align_tolerance=ALIGN_TOLERANCE,
                  align_scale=ALIGN_SCALE, nearest_scale=NEAREST_SCALE)
"""The ladder predicates (``ladder_on_floor``, ``on_ladder``, ``ladder_left``, ``ladder_right``)."""


def at_start(player: torch.Tensor) -> torch.Tensor:
    """Mario stands at his start position."""
    return near(player[..., X], START[0], 1.5, 0.3) * near(player[..., Y], START[1], 1.5, 0.3)


def barrel_visible(barrel: torch.Tensor) -> torch.Tensor:
    """This barrel slot holds a rolling barrel (the game is running): 1 here, and the reasoner's
    presence gate makes it 0 for an empty slot."""
    return torch.ones_like(barrel[..., 0])


def close_by_barrel(player: torch.Tensor, barrel: torch.Tensor) -> torch.Tensor:
    """A barrel is within 28 pixels of Mario."""
    return greater(DANGER_RADIUS, distance(player, barrel), 3.0)


VALUATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "at_start": at_start,
    "barrel_visible": barrel_visible,
    "ladder_on_floor": LADDERS.on_floor,
    "on_ladder": LADDERS.on_ladder,
    "ladder_left": LADDERS.left,
    "ladder_right": LADDERS.right,
    "close_by_barrel": close_by_barrel,
}
