"""Valuation functions of CartPole: soft truth values of the logic state's objects.

Each function takes object rows ``[..., 2]`` (the features ``pos``, ``vel``; for the pole: angle in
radians and angular velocity) and returns truth values ``[...]`` in [0, 1]. They are registered
explicitly in :data:`VALUATIONS` (name = the predicate's name in ``neural_preds.txt``).
"""

from __future__ import annotations

from typing import Callable

import torch

from blendrl.logic.soft import greater

POS, VEL = 0, 1
"""Columns of the features ``pos`` and ``vel`` (checked against ``SPEC.features`` in the tests)."""

FALL_VELOCITY_WEIGHT = 0.5
"""Where the pole is heading: angle + this x angular velocity (seconds)."""

FALL_SCALE = 0.02
"""Tilt (radians of angle + 0.5 x angular velocity) at which "falling" is sigmoid(1) = 0.73 true."""

EDGE_DISTANCE = 1.5
"""|cart position| at which the cart is half "near the edge" (the episode ends at 2.4)."""

EDGE_SCALE = 0.15


def _heading(pole: torch.Tensor) -> torch.Tensor:
    return torch.add(pole[..., POS], pole[..., VEL], alpha=FALL_VELOCITY_WEIGHT)


def pole_falling_right(pole: torch.Tensor) -> torch.Tensor:
    """The pole is tilted / turning to the right (positive angle + 0.5 x angular velocity)."""
    return greater(_heading(pole), 0.0, FALL_SCALE)


def pole_falling_left(pole: torch.Tensor) -> torch.Tensor:
    """The pole is tilted / turning to the left."""
    return greater(0.0, _heading(pole), FALL_SCALE)


def cart_near_edge(cart: torch.Tensor) -> torch.Tensor:
    """The cart is far from the centre of the track (|position| beyond about 1.5)."""
    return greater(cart[..., POS].abs(), EDGE_DISTANCE, EDGE_SCALE)


VALUATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "pole_falling_right": pole_falling_right,
    "pole_falling_left": pole_falling_left,
    "cart_near_edge": cart_near_edge,
}
