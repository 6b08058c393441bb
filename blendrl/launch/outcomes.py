"""What a job's exit status means and what to do about it, in the same words locally and on SLURM.

The training scripts' statuses (:mod:`blendrl.contract`): 0 done; 2 bad arguments (nothing was
started; ``--resume`` would pass the same arguments again); 65 a dataset fault (not retryable
until the data is fixed); 74 no space or an unwritable folder (the data is intact: free space,
then ``--resume``); 75 interrupted after checkpointing (``--resume`` continues it).
"""

from __future__ import annotations

import signal

from blendrl.contract import EXIT_DATA_FAULT, EXIT_INTERRUPTED, EXIT_NO_SPACE
from blendrl.launch.states import DONE, FAILED, INTERRUPTED, PARTIAL

EXIT_USAGE = 2
"""A training script's status for arguments it refuses."""

EXPLAINED: dict[int, str] = {
    EXIT_USAGE: "its arguments were refused (exit 2): the reason is in its log; --resume would "
                "pass the same arguments again",
    EXIT_DATA_FAULT: "its dataset is broken (exit 65): the reason is in its log; --resume cannot "
                     "help until the dataset is fixed (or made again by its online job)",
    EXIT_NO_SPACE: "it could not write (exit 74: disk full or a folder not writable); what it "
                   "wrote is intact: free space, then run_full_cycle.sh --resume",
    EXIT_INTERRUPTED: "interrupted after checkpointing (exit 75); continue with "
                      "run_full_cycle.sh --resume",
}
"""The statuses with a meaning of their own, in words."""

EXIT_PARTIAL = 3
"""A follower's (``--follow``) status when its online run stopped writing: it trained the marks
there were (partial)."""
PARTIAL_WORDS = ("exit 3: its online run stopped writing, it trained the marks there were; "
                 "run_full_cycle.sh --resume continues it with its online job")


def end_state(code: int, job: dict) -> tuple[str, str]:
    """``(state, words)`` of a job that exited with ``code``: done, interrupted, partial (a
    follower's exit 3) or failed."""
    if code == EXIT_PARTIAL and "--follow" in job.get("command", ()):
        return PARTIAL, PARTIAL_WORDS
    state = DONE if code == 0 else INTERRUPTED if code == EXIT_INTERRUPTED else FAILED
    return state, describe_exit(code)

NOT_RETRYABLE = frozenset({EXIT_USAGE, EXIT_DATA_FAULT})
"""Statuses that ``--resume`` alone would only repeat."""


def describe_exit(code: int) -> str:
    """Human words for a job's exit status (a negative status is the signal that killed it)."""
    if code == 0:
        return "exit 0"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by {name}"
    return EXPLAINED.get(code, f"exit {code}")


def blocked_jobs(jobs: list[dict]) -> set[str]:
    """The jobs of a registry that ``--resume`` alone cannot finish: those that ended with a
    status in :data:`NOT_RETRYABLE`, and the ``afterok`` jobs (and followers, ``after``) that
    wait on them."""
    blocked = {j["name"] for j in jobs if j.get("exit_code") in NOT_RETRYABLE
               and j["state"] != DONE}
    grew = True
    while grew:
        grew = False
        for j in jobs:
            if (j["name"] not in blocked and j["state"] != DONE
                    and j.get("dependency", "afterok") in ("afterok", "after")
                    and blocked & set(j.get("depends_on") or ())):
                blocked.add(j["name"])
                grew = True
    return blocked
