"""Scheduling the jobs of a registry (its data as :meth:`~blendrl.launch.registry.Registry.read`
returns it): which may start now, which are cancelled because a job they wait on ended without
finishing, how many are in each state, and whether all have ended; and, for the followers
(``after`` jobs, ``OFFLINE_START=follow``), which count among the computing jobs and which are
told that their online job ended unfinished."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from blendrl.launch.states import (CANCELLED, DONE, PENDING, RUNNING, STATES, TERMINAL,
                                   UNFINISHED, finish_job)

AFTER = "after"
"""A follower's dependency: it starts once its online job has started (SLURM's ``after``)."""
FOLLOW_WAITING = ".waiting"
"""In a follower's run folder while it waits for its online run's next mark (not computing)."""
FOLLOW_END = ".online_ended"
"""Put in a follower's run folder when its online job ended unfinished: its wait ends at once."""


def _job_map(data: dict) -> dict[str, dict]:
    return {j["name"]: j for j in data["jobs"]}


def propagate_cancellations(data: dict) -> list[str]:
    """Cancel every pending ``afterok`` or ``after`` job with a dependency that ended without
    finishing (failed, interrupted, partial or cancelled), transitively; returns the names
    cancelled now. (A follower not started yet when its online job failed would wait for nothing:
    ``--resume`` runs both again.)"""
    jobs = _job_map(data)
    cancelled: list[str] = []
    changed = True
    while changed:
        changed = False
        for job in data["jobs"]:
            if (job["state"] != PENDING
                    or job.get("dependency", "afterok") not in ("afterok", AFTER)):
                continue
            bad = [d for d in job["depends_on"] if jobs[d]["state"] in UNFINISHED]
            if bad:
                up = jobs[bad[0]]
                finish_job(job, CANCELLED, None,
                           f"upstream {up['name']} {up['state']}"
                           + (f" (exit {up['exit_code']})" if up.get("exit_code") is not None else ""))
                cancelled.append(job["name"])
                changed = True
    return cancelled


def ready_jobs(data: dict) -> list[dict]:
    """Pending jobs whose dependencies allow them to start now, in registry order."""
    jobs = _job_map(data)
    ready = []
    for job in data["jobs"]:
        if job["state"] != PENDING:
            continue
        deps = [jobs[d]["state"] for d in job["depends_on"]]
        if job.get("dependency", "afterok") == "afterany":
            ok = all(s in TERMINAL for s in deps)
        elif job.get("dependency") == AFTER:
            ok = all(s == RUNNING or s == DONE for s in deps)
        else:
            ok = all(s == DONE for s in deps)
        if ok:
            ready.append(job)
    return ready


def to_start(data: dict, running: Iterable[str], max_parallel: int) -> list[dict]:
    """The ready jobs to start now: every ready follower (``after``: it begins by waiting for its
    online run's next mark, so it takes no slot; once it trains it counts as computing), then the
    other ready jobs as far as the slots left by the computing ones allow."""
    ready = ready_jobs(data)
    followers = [j for j in ready if j.get("dependency") == AFTER]
    others = [j for j in ready if j.get("dependency") != AFTER]
    free = max_parallel - computing(data, running)
    return followers + others[:max(0, free)]


def counts(data: dict) -> dict[str, int]:
    """How many jobs are in each state."""
    c = {s: 0 for s in STATES}
    for job in data["jobs"]:
        c[job["state"]] = c.get(job["state"], 0) + 1
    return c


def all_finished(data: dict) -> bool:
    return all(j["state"] in TERMINAL for j in data["jobs"])


def computing(data: dict, running: Iterable[str]) -> int:
    """How many of the ``running`` jobs (names) compute: all but the followers whose run folder
    holds ``.waiting`` (waiting for their online run's next mark)."""
    jobs = _job_map(data)

    def waits(job: dict) -> bool:
        return ("--follow" in job.get("command", ()) and bool(job.get("run_dir"))
                and (Path(job["run_dir"]) / FOLLOW_WAITING).exists())

    return sum(1 for name in running if not waits(jobs[name]))


def end_followers(data: dict) -> list[str]:
    """Put ``.online_ended`` in the run folder of each running follower whose online job ended
    unfinished, where that folder exists (never creating it) and it is not there yet; returns the
    names of the followers told now."""
    jobs = _job_map(data)
    told = []
    for job in data["jobs"]:
        if job["state"] != RUNNING or job.get("dependency") != AFTER or not job.get("run_dir"):
            continue
        if not any(jobs[d]["state"] in UNFINISHED for d in job["depends_on"]):
            continue
        run_dir = Path(job["run_dir"])
        if run_dir.is_dir() and not (run_dir / FOLLOW_END).exists():
            try:
                (run_dir / FOLLOW_END).write_text("its online job ended unfinished\n")
            except OSError:
                continue
            told.append(job["name"])
    return told
