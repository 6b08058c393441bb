"""The states of a job of the registry, and the record of a job's end.

A job is ``pending`` until it starts, ``running`` while it runs, and ends ``done`` (exit 0),
``interrupted`` (exit 75 after a checkpoint), ``partial`` (a follower, ``--follow``, whose
online run stopped writing: exit 3), ``failed`` or ``cancelled``.
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
PARTIAL = "partial"
"""A follower (``--follow``) that ended with exit 3: it trained the marks its online run wrote
before it stopped (``dataset_partial`` in its run.json); ``--resume`` continues it."""
STATES = (PENDING, RUNNING, DONE, INTERRUPTED, PARTIAL, FAILED, CANCELLED)
TERMINAL = frozenset({DONE, INTERRUPTED, PARTIAL, FAILED, CANCELLED})
UNFINISHED = frozenset({INTERRUPTED, PARTIAL, FAILED, CANCELLED})
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
