"""The training scripts' flags that the launcher sets: those of the knobs (derived from the knob
table, :mod:`blendrl.launch.knobs`) and those of each job (:data:`JOB_FLAGS`), hence the flags
the pass-through arguments may not set again (:func:`managed_flags`); and the pass-through knobs,
whose words end a job's command (:func:`pass_through`)."""

from __future__ import annotations

from typing import Any

from blendrl.launch import knobs
from blendrl.launch.knobs import OFFLINE, ONLINE, PASS, Knob

JOB_FLAGS: dict[str, tuple[str, ...]] = {
    ONLINE: ("run_id", "save_dataset", "dataset_dir", "runs_dir", "threads", "resume"),
    OFFLINE: ("dataset_run_id", "dataset_dir", "run_id", "runs_dir", "threads", "resume", "follow"),
}
"""The flags the launcher sets per job (not from a knob) on each kind of training script
(``--follow``: on every offline job of an experiment with ``OFFLINE_START=follow``, whose job
starts with its online job; passed by hand it would follow a dataset the plan does not wait for)."""


def knob_of_flag(flag: str, kind: str) -> Knob | None:
    """The knob that sets the training-script flag ``flag`` on a ``kind`` script, if any."""
    return next((k for k in knobs.KNOBS if k.flag == flag and kind in k.scripts), None)


def pass_through(kind: str, blendrl: bool) -> tuple[Knob, ...]:
    """The pass-through knobs whose words a ``kind`` script gets (``blendrl``: of a BlendRL
    method), in the order they are appended to its command."""
    return tuple(k for k in knobs.KNOBS if k.section == PASS and kind in k.scripts
                 and (blendrl or not k.blendrl_only))


def managed_flags(kind: str) -> tuple[str, ...]:
    """The training-script flags the launcher sets itself on a ``kind`` script: those of the
    knobs and those of each job. Pass-through arguments may not set them again."""
    return tuple(k.flag for k in knobs.KNOBS if k.flag and kind in k.scripts) + JOB_FLAGS[kind]


def script_flags(kind: str, config: Any, seed: int) -> list[str]:
    """The knob flags of a ``kind`` training-script job with seed ``seed``, from the validated
    configuration ``config``: ``["--env", "cartpole", "--seed", "0", ...]`` in table order; a
    boolean knob is a switch, ``--{flag}`` when on and nothing when off."""
    words: list[str] = []
    for k in knobs.KNOBS:
        if k.flag and kind in k.scripts:
            value = seed if k.per_seed else getattr(config, k.config)
            if k.kind is knobs.BOOL:
                words += [f"--{k.flag}"] if value else []
            else:
                words += [f"--{k.flag}", str(value)]
    return words
