"""Valuation functions of Kangaroo (object rows ``(visible, x, y, w, h, value)``, pixels).

Each function takes object rows ``[..., 6]`` and returns truth values ``[...]`` in [0, 1] as if its
objects were present: the reasoner multiplies every atom by its objects' ``visible`` flags (the
spec's presence feature), so an atom about an empty slot is exactly 0. Registered explicitly in
:data:`VALUATIONS` (name = predicate).
Calibrated on real states of level 1: floors (platforms) at y = 172, 124, 76, 28; a standing
player's feet (y + h) are at the floor's y; a ladder's foot (y + h) is 4-5 pixels above the floor it
stands on and its top 8 pixels below the feet of a player who has climbed it; the player climbs when
its centre is within about a pixel of the ladder's centre.
"""

from __future__ import annotations

from typing import Callable

import torch

from blendrl.logic.geometry import Ladders, bottom, distance, greater, offset_x, within

LADDER_FOOT_OFFSET = 2.5
"""Typical floor-to-ladder-foot offset (pixels): a ladder stands on the player's floor when the
player's feet are within :data:`FLOOR_TOLERANCE` of its foot + this."""

FLOOR_TOLERANCE = 7.0

TOP_MARGIN = 6.0
"""The player is still on a ladder while its feet are below the ladder's top minus this."""

ALIGN_TOLERANCE = 1.5
"""Horizontal offset of centres (pixels) within which the player is aligned with a ladder (the
game lets it climb from an offset of up to 1 pixel)."""

ALIGN_SCALE = 0.25

NEAREST_SCALE = 200.0
"""Walking to a ladder is ``exp(-distance / this)`` true, so the nearest ladder wins the soft OR."""

DANGER_RADIUS = 32.0
"""Distance of centres (pixels) within which a monkey or a coconut is close."""


LADDERS = Ladders(foot_offset=LADDER_FOOT_OFFSET, floor_tolerance=FLOOR_TOLERANCE,
                  top_margin=TOP_MARGIN, top_scale=0.7, align_tolerance=ALIGN_TOLERANCE,
                  align_scale=ALIGN_SCALE, nearest_scale=NEAREST_SCALE)
"""The ladder predicates (``ladder_on_floor``, ``on_ladder``, ``ladder_left``, ``ladder_right``)."""


def child_on_floor(player: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
    """The joey is on the player's floor (the top floor)."""
    return within(bottom(player - child), FLOOR_TOLERANCE, 1.5)  # = near(bottom(player), bottom(child))


def child_left(player: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
    """The joey is to the left of the player."""
    return greater(offset_x(player, child), 2.0, 1.0)


def child_right(player: torch.Tensor, child: torch.Tensor) -> torch.Tensor:
    """The joey is to the right of the player."""
    return greater(offset_x(child, player), 2.0, 1.0)


def close_by_threat(player: torch.Tensor, threat: torch.Tensor) -> torch.Tensor:
    """A monkey or a coconut (thrown or falling) is within 32 pixels of the player."""
    return greater(DANGER_RADIUS, distance(player, threat), 3.0)


VALUATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "ladder_on_floor": LADDERS.on_floor,
    "on_ladder": LADDERS.on_ladder,
    "ladder_left": LADDERS.left,
    "ladder_right": LADDERS.right,
    "child_on_floor": child_on_floor,
    "child_left": child_left,
    "child_right": child_right,
    "close_by_threat": close_by_threat,
}
