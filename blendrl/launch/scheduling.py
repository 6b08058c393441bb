"""Scheduling the jobs of a registry (its data as :meth:`~blendrl.launch.registry.Registry.read`
returns it): which may start now, which are cancelled because a job they wait on ended without
finishing, how many are in each state, and whether all have ended."""

from __future__ import annotations

from blendrl.launch.states import (CANCELLED, DONE, PENDING, STATES, TERMINAL, UNFINISHED,
                                   finish_job)


def _job_map(data: dict) -> dict[str, dict]:
    return {j["name"]: j for j in data["jobs"]}


def propagate_cancellations(data: dict) -> list[str]:
    """Cancel every pending ``afterok`` job with a dependency that ended without finishing
    (failed, interrupted or cancelled), transitively; returns the names cancelled now."""
    jobs = _job_map(data)
    cancelled: list[str] = []
    changed = True
    while changed:
        changed = False
        for job in data["jobs"]:
            if job["state"] != PENDING or job.get("dependency", "afterok") != "afterok":
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
        else:
            ok = all(s == DONE for s in deps)
        if ok:
            ready.append(job)
    return ready


def counts(data: dict) -> dict[str, int]:
    """How many jobs are in each state."""
    c = {s: 0 for s in STATES}
    for job in data["jobs"]:
        c[job["state"]] = c.get(job["state"], 0) + 1
    return c


def all_finished(data: dict) -> bool:
    return all(j["state"] in TERMINAL for j in data["jobs"])
