"""Soft comparisons: the building blocks of valuation functions (truth values in [0, 1]).

Numbers enter the arithmetic as :func:`constant` tensors. An op between a tensor and a Python float
first converts the float, which on CPU costs about as much as the op itself; at batch 1 (a rollout
step) the valuation functions are a large part of the BlendRL agent's action time. Write valuation
functions with these helpers (or :func:`constant`) rather than ``tensor - 2.0``.
"""

from __future__ import annotations

import torch

Number = float | int


_CONSTANTS: dict[tuple[float, torch.dtype], torch.Tensor] = {}


def constant(value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``value`` as a 0-dim CPU tensor of ``dtype``, made once per value (never modify it in place).
    A 0-dim CPU tensor may meet a tensor on any device, as the one scalar operand of an op."""
    key = (value, dtype)
    tensor = _CONSTANTS.get(key)
    if tensor is None:
        tensor = torch.tensor(float(value), dtype=dtype)
        if not torch.compiler.is_compiling():  # (while torch.compile traces: a graph constant)
            _CONSTANTS[key] = tensor
    return tensor


def greater(a: torch.Tensor | Number, b: torch.Tensor | Number, scale: float) -> torch.Tensor:
    """Soft ``a > b``: ``sigmoid((a - b) / scale)``; either side may be a number."""
    # a number enters as a fused ``c + x * alpha`` (one op, one CPU scalar, so CUDA tensors work)
    if isinstance(b, Number):
        return torch.sigmoid(torch.add(constant(-b / scale, a.dtype), a, alpha=1.0 / scale))
    if isinstance(a, Number):
        return torch.sigmoid(torch.add(constant(a / scale, b.dtype), b, alpha=-1.0 / scale))
    return torch.sigmoid((a - b) * constant(1.0 / scale, a.dtype))


def within(gap: torch.Tensor, radius: float, scale: float) -> torch.Tensor:
    """Soft ``|gap| < radius``: ``sigmoid((radius - |gap|) / scale)``."""
    return torch.sigmoid(torch.add(constant(radius / scale, gap.dtype), gap.abs(), alpha=-1.0 / scale))


def near(a: torch.Tensor, b: torch.Tensor | Number, radius: float, scale: float) -> torch.Tensor:
    """Soft ``|a - b| < radius``: ``sigmoid((radius - |a - b|) / scale)``."""
    return within(a - (constant(b, a.dtype) if isinstance(b, Number) else b), radius, scale)


def proximity(gap: torch.Tensor, scale: float) -> torch.Tensor:
    """``exp(-|gap| / scale)``: 1 for no gap, smaller the farther; multiplying a truth value by it
    makes the soft OR over several objects prefer the nearest one."""
    return torch.exp(gap.abs() * constant(-1.0 / scale, gap.dtype))
