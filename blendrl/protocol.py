"""The training and evaluation protocol flags that all four training scripts share, defined once.

* ``--reward_transform`` and ``--life_loss_terminal``: what the learner optimises
  (:mod:`blendrl.algos.signal`); recorded data stays raw whatever they are;
* ``--eval_policy``: how evaluation selects actions, the same for every method
  (:mod:`blendrl.evaluation`);
* ``--eval_video``: each evaluation's first episode also written as an MP4 (:mod:`blendrl.video`;
  changes no result, so a ``--resume`` may switch it).

Left unset (``None``), the learner's signal takes the environment's default (Atari: ``sign`` and
a lost life terminal; classic control: the raw reward); an offline run takes the setting its
dataset's online run trained with, so that both learn from the same signal. ``run.json`` records
the resolved values (the Args are written after :func:`resolve_signal_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, TypeVar

import tyro
import tyro.constructors

from blendrl.checkpoints import RESUME_FREE
from blendrl.exits import UsageError
from blendrl.algos.signal import REWARD_TRANSFORMS, LearnerSignal, SignalError, resolve_signal
from blendrl.envs.base import EnvSpec
from blendrl.evaluation import DEFAULT_EVAL_POLICY, EVAL_POLICIES
from blendrl.cli_parse import parse_bool


def _optional_bool(args: list[str]) -> bool | None:
    """A bare flag is True; otherwise its value (``True/False``, ``1/0``, ..., or ``None``)."""
    if not args:
        return True
    return None if args[0].strip().lower() == "none" else parse_bool(args[0])


OPTIONAL_BOOL_FLAG = tyro.constructors.PrimitiveConstructorSpec(
    nargs=(0, 1), metavar="[{True,False}]", instance_from_str=_optional_bool,
    is_instance=lambda v: v is None or isinstance(v, bool), str_from_instance=lambda v: [str(v)])
"""``--flag`` (True), ``--flag False`` or nothing (None: the default decides) for a
``bool | None`` field; tyro alone requires a value after the flag."""


@dataclass
class ProtocolFields:
    """Flags of the learner's signal and of the evaluation (shared by the four scripts)."""

    reward_transform: Annotated[str | None, tyro.conf.arg(
        metavar="{" + ",".join(REWARD_TRANSFORMS) + "}")] = None
    """reward the learner optimises: none (raw) or sign (clipped to -1/0/1); default: sign on Atari, none on classic control (an offline run: its dataset's online setting). Recorded data stays raw"""
    life_loss_terminal: Annotated[bool | None, OPTIONAL_BOOL_FLAG] = None
    """a lost life stops the learner's bootstrap (GAE, IQL targets) without resetting the game; default: True on Atari (an offline run: its dataset's online setting); games with lives only"""
    eval_policy: Annotated[str, tyro.conf.arg(metavar="{" + ",".join(EVAL_POLICIES) + "}")] = \
        DEFAULT_EVAL_POLICY
    """evaluation actions: sample (from the policy, what the field reports) or greedy (its most probable action); the same for all four methods"""
    eval_video: Annotated[bool, RESUME_FREE] = False
    """also write each evaluation's first episode as an MP4 under {runs_dir}/{run_id}/videos/ (one frame per agent step; BlendRL: the blend weight and the clauses that fire most beside the frame); the results are the same without it"""


T = TypeVar("T", bound=ProtocolFields)


def check_eval_policy(value: str) -> None:
    """Raises SignalError (a ValueError) for an unknown ``--eval_policy``."""
    if value not in EVAL_POLICIES:
        raise SignalError(f"--eval_policy {value!r} is not one of {', '.join(EVAL_POLICIES)}")


def check_eval_video(eval_video: bool, spec: EnvSpec) -> None:
    """Raises UsageError for ``--eval_video`` on an environment that cannot render."""
    if eval_video and not spec.can_render:
        raise UsageError(f"--eval_video: environment {spec.name!r} cannot render frames "
                         "(its EnvSpec has can_render=False)")


def resolve_signal_fields(args: T, spec: EnvSpec, recorded: dict | None = None) -> tuple[T, LearnerSignal]:
    """``args`` with the signal flags filled in, and the signal; raises SignalError (UsageError
    for a ``--eval_video`` the environment cannot honour).

    ``recorded`` (an offline run: the dataset's manifest metadata) supplies the online run's
    settings for the flags left unset, before the environment's defaults.
    """
    check_eval_policy(args.eval_policy)
    check_eval_video(args.eval_video, spec)
    recorded = recorded or {}
    transform = args.reward_transform
    if transform is None:
        transform = recorded.get("reward_transform")
    life = args.life_loss_terminal
    if life is None:
        life = recorded.get("life_loss_terminal")
    signal = resolve_signal(transform, life, env=spec.name, has_lives=spec.has_lives,
                            is_atari=spec.is_image)
    return replace(args, reward_transform=signal.reward_transform,
                   life_loss_terminal=signal.life_loss_terminal), signal
