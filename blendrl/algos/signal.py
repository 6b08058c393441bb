"""What the learner optimises, as a documented transform of what is recorded — one definition for
PPO (online) and IQL (offline), so that IQL trained on a PPO dataset sees exactly the signal PPO saw.

Everything recorded stays raw (docs/DESIGN.md sections 4 and 6): datasets, ``results.json``, training
logs and plots hold the game's own score and whole games across lives. The learner sees:

* **reward** ``reward_transform(r)``: ``"none"`` (the raw reward) or ``"sign"`` (``sign(r)`` in
  ``{-1, 0, 1}``, CleanRL's ``ClipRewardEnv`` and the BlendRL reference's Atari setting; the
  game's score scale, hundreds per event, would otherwise dominate the value losses: PPO's value
  clip of 0.1 and IQL's ``exp(beta * advantage)``);
* **no bootstrap** where ``terminated``, and also where a life was lost when
  ``life_loss_terminal`` is on (CleanRL's ``EpisodicLifeEnv``, which ends the training episode at a
  lost life; here the game is *not* reset — only the return's bootstrap and PPO's GAE chain stop
  there, the next state is the game going on).

Defaults per environment (:func:`default_signal`): Atari ``sign`` + life loss terminal; classic
control ``none`` and no lives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

REWARD_TRANSFORMS: tuple[str, ...] = ("none", "sign")
"""The names ``--reward_transform`` accepts."""


class SignalError(ValueError):
    """A learner-signal setting that does not fit the environment."""


@dataclass(frozen=True)
class LearnerSignal:
    """The learner's reward and bootstrap rule (see the module docstring)."""

    reward_transform: str = "none"
    """``"none"`` or ``"sign"``."""
    life_loss_terminal: bool = False
    """A lost life stops the bootstrap (the game goes on)."""

    def __post_init__(self) -> None:
        if self.reward_transform not in REWARD_TRANSFORMS:
            raise SignalError(f"unknown reward transform {self.reward_transform!r}; valid: "
                              f"{', '.join(REWARD_TRANSFORMS)}")

    def reward(self, reward: torch.Tensor) -> torch.Tensor:
        """The learner's reward (float32) from raw rewards."""
        r = reward.float()
        return torch.sign(r) if self.reward_transform == "sign" else r

    def reward_np(self, reward: np.ndarray) -> np.ndarray:
        """:meth:`reward` for numpy arrays (float32)."""
        r = np.asarray(reward, dtype=np.float32)
        return np.sign(r) if self.reward_transform == "sign" else r

    def no_bootstrap(self, terminated: torch.Tensor, life_lost: torch.Tensor | None) -> torch.Tensor:
        """1.0 where the target must not bootstrap from the successor state, else 0.0 (float32)."""
        stop = terminated.float()
        if self.life_loss_terminal and life_lost is not None:
            stop = torch.maximum(stop, life_lost.float())
        return stop


    def no_bootstrap_np(self, terminated: np.ndarray, life_lost: np.ndarray | None) -> np.ndarray:
        """:meth:`no_bootstrap` for numpy bool arrays (bool). PPO also cuts its GAE chain with it,
        given ``done`` for ``terminated``."""
        stop = np.asarray(terminated, dtype=bool)
        if self.life_loss_terminal and life_lost is not None:
            stop = stop | np.asarray(life_lost, dtype=bool)
        return stop


def default_signal(env_has_lives: bool, is_atari: bool) -> LearnerSignal:
    """The field's defaults: Atari ``sign`` with a lost life terminal; elsewhere the raw reward."""
    if is_atari:
        return LearnerSignal("sign", env_has_lives)
    return LearnerSignal("none", False)


def resolve_signal(reward_transform: str | None, life_loss_terminal: bool | None, *,
                   env: str, has_lives: bool, is_atari: bool) -> LearnerSignal:
    """The signal of a run from its flags (None = the environment's default); raises SignalError
    for an unknown transform or ``life_loss_terminal`` on a game without lives."""
    default = default_signal(has_lives, is_atari)
    transform = default.reward_transform if reward_transform is None else reward_transform
    if transform not in REWARD_TRANSFORMS:
        raise SignalError(f"--reward_transform {transform!r} is not one of {', '.join(REWARD_TRANSFORMS)}")
    life = default.life_loss_terminal if life_loss_terminal is None else bool(life_loss_terminal)
    if life and not has_lives:
        raise SignalError(f"--life_loss_terminal: environment {env} has no lives")
    return LearnerSignal(transform, life)
