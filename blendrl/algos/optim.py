"""The optimiser of every learner here (PPO's and IQL's): Adam on torch's multi-tensor
("foreach") kernels.

On a CPU torch's default Adam updates one parameter tensor at a time; ``foreach=True`` updates
them all per operation and gives the same numbers bit for bit (``tests/test_optim.py``), so runs
reproduce across the change. Measured with the Nature-CNN parameters of four networks (an IQL
step's three optimisers) on the 2-core AMD EPYC, one thread: 38 ms a step -> 12 ms. (On a GPU
torch already picks foreach.) A checkpoint written before records ``foreach: None`` in its
parameter groups; :func:`load_adam_state` sets it back on, which changes no number either.

Adam's step counts stay on the CPU. torch keeps ``state["step"]`` a CPU tensor unless the
optimiser is ``capturable`` or ``fused``, and reads it on the host every step (the bias
corrections); ``Optimizer.load_state_dict`` leaves ``step`` where the loaded tensor is, so a
checkpoint loaded with ``map_location="cuda"`` (``--resume`` on a GPU) would put every count on
the GPU: one host sync per parameter per step (about 44 in an IQL step). :func:`load_adam_state`
moves them back.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


def adam(params: Iterable[Any], **kwargs: Any) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **kwargs)`` on the foreach kernels."""
    return torch.optim.Adam(params, foreach=True, **kwargs)


def load_adam_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, the foreach kernels kept whatever ``state`` says, and
    the step counts on the CPU (where torch puts them) wherever ``state`` held them (see the module
    docstring); a ``capturable`` or ``fused`` group keeps them on its parameters' device."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["foreach"] = True
        if group.get("capturable") or group.get("fused"):
            continue
        for param in group["params"]:
            param_state = optimizer.state.get(param, {})
            step = param_state.get("step")
            if isinstance(step, torch.Tensor) and step.device.type != "cpu":
                param_state["step"] = _to_host(step)


def _to_host(step: torch.Tensor) -> torch.Tensor:
    """A step count on the CPU (a seam for the tests, which have no GPU to load it from)."""
    return step.to("cpu")
