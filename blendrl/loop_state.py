"""What a training loop carries across a checkpoint (besides networks, optimisers and RNGs), as
typed records with defaults, and where the loops evaluate (:func:`interval_marks`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar


def interval_marks(total: int, intervals: int) -> list[int]:
    """Evenly spaced transition counts: ceil(k * total / K), k = 1..K (online evaluation marks,
    and the offline data limits of a dataset that has no marks)."""
    return [math.ceil(k * total / intervals) for k in range(1, intervals + 1)]


def new_training_log() -> dict:
    return {"episode_returns": [], "episode_lengths": [], "episode_end_steps": [],
            "updates": [], "blend": []}


@dataclass
class RunState:
    """What every training loop carries across a checkpoint (besides networks, optimisers and
    RNGs). Every field has a default, so a checkpoint written before a field existed still loads
    (:func:`state_from_checkpoint`)."""

    best_return: float = -math.inf
    """the best evaluation mean so far (best.pt)"""
    results: list = field(default_factory=list)
    """the results.json entries so far"""
    training_log: dict = field(default_factory=lambda: new_training_log())
    timing: dict | None = None
    """the Timer's state at the checkpoint"""


@dataclass
class OnlineLoopState(RunState):
    """The online loop's state."""

    global_step: int = 0
    """environment transitions collected"""
    iteration: int = 0
    """PPO iterations done"""
    next_mark: int = 0
    """index of the next evaluation mark"""


@dataclass
class OfflineLoopState(RunState):
    """The offline interval loop's state (the trainer, RNGs and minibatch sampler apart)."""

    interval: int = 0
    """intervals finished"""
    step_in_interval: int = 0
    """gradient steps done in the current interval"""
    interval_train_seconds: float = 0.0
    grad_steps: int = 0
    """gradient steps over the whole run"""


LoopState = TypeVar("LoopState", OnlineLoopState, OfflineLoopState)


def state_items(state: Any) -> dict[str, Any]:
    """A loop state's fields as checkpoint entries (no copies: the checkpoint is written at once)."""
    return {f.name: getattr(state, f.name) for f in fields(state)}


def state_from_checkpoint(cls: type[LoopState], ckpt: dict[str, Any]) -> LoopState:
    """The loop state saved in ``ckpt``: each field it holds, the default for each it lacks (a
    checkpoint from before that field existed); other checkpoint entries are not the state's."""
    return cls(**{f.name: ckpt[f.name] for f in fields(cls) if f.name in ckpt})
