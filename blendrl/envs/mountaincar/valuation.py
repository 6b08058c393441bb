"""Valuation functions of MountainCar: soft truth values of the car's state.

Each function takes car rows ``[..., 2]`` (the features ``pos``, ``vel``) and returns truth values
``[...]`` in [0, 1]. Velocities lie in [-0.07, 0.07]; a reset leaves the car at velocity exactly 0.
They are registered explicitly in :data:`VALUATIONS` (name = the predicate's name in
``neural_preds.txt``).
"""

from __future__ import annotations

from typing import Callable

import torch

from blendrl.logic.soft import constant, greater, within

POS, VEL = 0, 1
"""Columns of the features ``pos`` and ``vel`` (checked against ``SPEC.features`` in the tests)."""

MOVING_SCALE = 0.002
"""Velocity at which "moving" is sigmoid(1) = 0.73 true."""

REST_SCALE = 1e-4
"""Width of "at rest": exp(-(v / REST_SCALE)^2) (1 at exactly 0, below 0.02 from |v| = 2e-4 on)."""

SLOW_SPEED = 0.005
"""|velocity| at which "slow" is half true."""

SLOW_SCALE = 0.001


def moving_right(car: torch.Tensor) -> torch.Tensor:
    """The car moves to the right (positive velocity)."""
    return greater(car[..., VEL], 0.0, MOVING_SCALE)


def moving_left(car: torch.Tensor) -> torch.Tensor:
    """The car moves to the left (negative velocity)."""
    return greater(0.0, car[..., VEL], MOVING_SCALE)


def at_rest(car: torch.Tensor) -> torch.Tensor:
    """The car stands still (as after a reset)."""
    speed = car[..., VEL]
    return torch.exp(torch.square(speed) * constant(-1.0 / REST_SCALE ** 2, speed.dtype))


def slow(car: torch.Tensor) -> torch.Tensor:
    """The car barely moves (|velocity| below about 0.005)."""
    return within(car[..., VEL], SLOW_SPEED, SLOW_SCALE)


VALUATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "moving_right": moving_right,
    "moving_left": moving_left,
    "at_rest": at_rest,
    "slow": slow,
}
