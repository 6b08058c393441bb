"""Soft geometric comparisons of Atari object rows, the building blocks of Atari valuation functions.

An Atari object row has the features ``(visible, x, y, w, h, value)`` (see
:data:`blendrl.envs.atari.FEATURES`): ``x``, ``y`` the top-left pixel, ``w``, ``h`` the size, on the
210x160 screen (``y`` grows downwards). Every function takes rows ``[..., 6]`` and returns ``[...]``.
The comparisons are sigmoids of scaled differences. None of them looks at ``visible``: the reasoner
multiplies every valuation atom by its objects' presence flags (``EnvSpec.presence_feature``), so
anything about an empty slot is exactly 0 without each function checking it. The soft comparisons
themselves (``greater``, ``near``, ``within``, ``proximity``, ``constant``) live in
:mod:`blendrl.logic.soft` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from blendrl.logic.soft import constant, greater, near, proximity, within

__all__ = ["VISIBLE", "X", "Y", "W", "H", "VALUE", "visible", "center_x", "center_y", "top", "bottom",
           "value", "offset_x", "offset_y", "distance", "Ladders", "constant", "greater", "near",
           "within", "proximity"]

VISIBLE, X, Y, W, H, VALUE = 0, 1, 2, 3, 4, 5
"""Columns of an Atari object row (checked against ``blendrl.envs.atari.FEATURES`` in the tests)."""


def visible(obj: torch.Tensor) -> torch.Tensor:
    """1 for a present object, 0 for an empty slot."""
    return obj[..., VISIBLE]


_COMBINATIONS = {  # feature weights of the linear functions of a row used below
    "center_x": {X: 1.0, W: 0.5},
    "center_y": {Y: 1.0, H: 0.5},
    "bottom": {Y: 1.0, H: 1.0},
}


def _make_weights(names: tuple[str, ...]) -> torch.Tensor:
    """``[6]`` (one name) or ``[6, k]``: the feature weights of ``names``, as one matrix so that a
    single matmul computes them (cheaper on CPU than selecting and adding columns; exact, as the
    weights are 0, 0.5 and 1 -- unless TF32/bf16 matmuls are switched on, which this project does not)."""
    matrix = torch.zeros(6, len(names))
    for k, name in enumerate(names):
        for column, weight in _COMBINATIONS[name].items():
            matrix[column, k] = weight
    return matrix[:, 0] if len(names) == 1 else matrix


_WEIGHTS: dict[tuple, torch.Tensor] = {}
"""The weights by names (float32 on the CPU: the common case, looked up without hashing a device)
or by (names, dtype, device)."""


def _combine(rows: torch.Tensor, *names: str) -> torch.Tensor:
    key = names if rows.is_cpu and rows.dtype == torch.float32 else (names, rows.dtype, rows.device)
    weights = _WEIGHTS.get(key)
    if weights is None:
        weights = _make_weights(names).to(dtype=rows.dtype, device=rows.device)
        if not torch.compiler.is_compiling():
            _WEIGHTS[key] = weights
    return rows @ weights


def center_x(obj: torch.Tensor) -> torch.Tensor:
    return _combine(obj, "center_x")


def center_y(obj: torch.Tensor) -> torch.Tensor:
    return _combine(obj, "center_y")


def top(obj: torch.Tensor) -> torch.Tensor:
    return obj[..., Y]


def bottom(obj: torch.Tensor) -> torch.Tensor:
    """The lowest pixel row (feet of a character, foot of a ladder): ``y + h``."""
    return _combine(obj, "bottom")


def value(obj: torch.Tensor) -> torch.Tensor:
    return obj[..., VALUE]


def offset_x(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``center_x(a) - center_x(b)``."""
    return _combine(a - b, "center_x")


def offset_y(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``center_y(a) - center_y(b)`` (positive when ``a`` is lower on the screen)."""
    return _combine(a - b, "center_y")


def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of the two objects' centres, in pixels."""
    return torch.linalg.vector_norm(_combine(a - b, "center_x", "center_y"), dim=-1)


@dataclass(frozen=True)
class Ladders:
    """The soft ladder predicates of the climbing games (Kangaroo, Donkey Kong), one set of
    calibration constants per game. Each method takes ``(player, ladder)`` rows and is registered
    by the game's ``valuation.py`` under its predicate name."""

    foot_offset: float
    """Floor-to-ladder-foot offset (pixels): a ladder stands on the player's floor when the player's
    feet are within ``floor_tolerance`` of its foot + this."""
    floor_tolerance: float
    top_margin: float
    """The player is still on a ladder while its feet are below the ladder's top minus this."""
    top_scale: float
    """Softness (pixels) of "below the ladder's top"."""
    align_tolerance: float
    """Horizontal offset of centres (pixels) within which the player is aligned with a ladder."""
    align_scale: float
    nearest_scale: float
    """Walking to a ladder is ``exp(-distance / this)`` true, so the nearest ladder wins the soft OR."""

    def on_floor(self, player: torch.Tensor, ladder: torch.Tensor) -> torch.Tensor:
        """The ladder stands on the player's floor (it leads up from where the player stands)."""
        # bottom(player) - bottom(ladder) = bottom(player - ladder): the functions are linear
        return near(bottom(player - ladder), self.foot_offset, self.floor_tolerance, 1.5)

    def on_ladder(self, player: torch.Tensor, ladder: torch.Tensor) -> torch.Tensor:
        """The player is at (aligned with) the ladder and below its top: pressing up climbs."""
        # the horizontal offset of the centres and the height of the feet above the ladder's foot
        offset, feet_to_foot = _combine(player - ladder, "center_x", "bottom").unbind(-1)
        aligned = within(offset, self.align_tolerance, self.align_scale)
        feet_to_top = feet_to_foot + ladder[..., H]  # bottom(player) - top(ladder)
        below_top = greater(feet_to_top, -self.top_margin, self.top_scale)
        above_foot = greater(self.foot_offset + self.floor_tolerance, feet_to_foot, 1.5)
        return aligned * below_top * above_foot

    def left(self, player: torch.Tensor, ladder: torch.Tensor) -> torch.Tensor:
        """The ladder is to the left of the player (the nearer, the truer)."""
        return self._toward(offset_x(player, ladder))

    def right(self, player: torch.Tensor, ladder: torch.Tensor) -> torch.Tensor:
        """The ladder is to the right of the player (the nearer, the truer)."""
        return self._toward(offset_x(ladder, player))

    def _toward(self, gap: torch.Tensor) -> torch.Tensor:
        beyond = greater(gap, self.align_tolerance, self.align_scale)
        return beyond * proximity(gap, self.nearest_scale)
