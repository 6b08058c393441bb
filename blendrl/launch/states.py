"""The states of a job of the registry, and the record of a job's end.

A job is ``pending`` until it starts, ``running`` while it runs, and ends ``done`` (exit 0),
``interrupted`` (exit 75 after a checkpoint), ``failed`` or ``cancelled``.
"""

from __future__ import annotations

from blendrl.file_io import now_iso

PENDING = "pending"
RUNNING = "running"
DONE = "done"
INTERRUPTED = "interrupted"
"""Ended with exit 75 after writing a checkpoint (SIGTERM/SIGUSR1): ``--resume`` continues it."""
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (PENDING, RUNNING, DONE, INTERRUPTED, FAILED, CANCELLED)
TERMINAL = frozenset({DONE, INTERRUPTED, FAILED, CANCELLED})
UNFINISHED = frozenset({INTERRUPTED, FAILED, CANCELLED})
"""Ended without finishing: what ``run_full_cycle.py --resume`` continues."""


def finish_job(job: dict, state: str, exit_code: int | None, reason: str | None) -> None:
    """Record the end of a job; a job already cancelled stays cancelled (its exit code is kept)."""
    if job["state"] == CANCELLED:
        if exit_code is not None and job.get("exit_code") is None:
            job["exit_code"] = exit_code
        return
    job["state"] = state
    job["exit_code"] = exit_code
    job["reason"] = reason
    job["ended_at"] = job.get("ended_at") or now_iso()
