"""Soft comparisons: the building blocks of valuation functions (truth values in [0, 1]).

Numbers enter the arithmetic as :func:`constant` tensors. An op between a tensor and a Python float
first converts the float, which on CPU costs about as much as the op itself; at batch 1 (a rollout
step) the valuation functions are a large part of the BlendRL agent's action time. Write valuation
functions with these helpers (or :func:`constant`) rather than ``tensor - 2.0``.
"""

from __future__ import annotations

import torch

Number = float | int


_CONSTANTS: dict[float, torch.Tensor] = {}


def constant(value: float) -> torch.Tensor:
    """``value`` as a 0-dim float32 tensor, made once per value (never modify it in place). Being
    0-dim, it takes the other operand's dtype and may meet a tensor on any device."""
    tensor = _CONSTANTS.get(value)
    if tensor is None:
        tensor = torch.tensor(float(value), dtype=torch.float32)
        if not torch.compiler.is_compiling():  # (while torch.compile traces: a graph constant)
            _CONSTANTS[value] = tensor
    return tensor


def _tensor(x: torch.Tensor | Number) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else constant(x)


def greater(a: torch.Tensor | Number, b: torch.Tensor | Number, scale: float) -> torch.Tensor:
    """Soft ``a > b``: ``sigmoid((a - b) / scale)``; either side may be a number."""
    if isinstance(b, Number):  # a / scale - b / scale in one fused op
        return torch.sigmoid(torch.addcmul(constant(-b / scale), a, constant(1.0 / scale)))
    if isinstance(a, Number):
        return torch.sigmoid(torch.addcmul(constant(a / scale), b, constant(-1.0 / scale)))
    return torch.sigmoid((a - b) * constant(1.0 / scale))


def within(gap: torch.Tensor, radius: float, scale: float) -> torch.Tensor:
    """Soft ``|gap| < radius``: ``sigmoid((radius - |gap|) / scale)``."""
    return torch.sigmoid(torch.addcmul(constant(radius / scale), gap.abs(), constant(-1.0 / scale)))


def near(a: torch.Tensor, b: torch.Tensor | Number, radius: float, scale: float) -> torch.Tensor:
    """Soft ``|a - b| < radius``: ``sigmoid((radius - |a - b|) / scale)``."""
    return within(a - _tensor(b), radius, scale)


def proximity(gap: torch.Tensor, scale: float) -> torch.Tensor:
    """``exp(-|gap| / scale)``: 1 for no gap, smaller the farther; multiplying a truth value by it
    makes the soft OR over several objects prefer the nearest one."""
    return torch.exp(gap.abs() * constant(-1.0 / scale))
