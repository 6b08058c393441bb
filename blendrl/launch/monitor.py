"""Watching an experiment: ``--status EXP`` (each job's state) and ``--wait`` (progress until the
experiment ends, then a summary).

In local mode the runner keeps the registry current; in cluster mode :func:`refresh` asks SLURM
(``scontrol show job -o``) for every job not yet ended and records the answer, a pending job's
reason included (``slurm_reason``: squeue's ``%r``). Both show that reason; one that waiting
cannot clear (``PartitionConfig``, ...; :mod:`blendrl.launch.slurm_checks`) is said at once with
the knob to change, and ``--wait`` stops following (exit 1) instead of waiting for ever. The
summary says what a job's exit status means (:mod:`blendrl.launch.outcomes`) and suggests
``--resume`` only where it can help.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import IO

from blendrl.file_io import now_iso
from blendrl.launch import procs, slurm
from blendrl.launch.outcomes import EXPLAINED, blocked_jobs, describe_exit
from blendrl.launch.slurm_checks import pending_line, pending_reason
from blendrl.launch.registry import Registry
from blendrl.launch.scheduling import all_finished, counts, end_followers
from blendrl.launch.states import (CANCELLED, DONE, FAILED, INTERRUPTED, PARTIAL, PENDING,
                                   RUNNING, TERMINAL, UNFINISHED, finish_job)


def refresh(registry: Registry) -> dict:
    """The registry, with cluster jobs' states brought up to date from SLURM (and
    ``.online_ended`` put in the run folder of a running follower whose online job ended
    unfinished, as the local runner does)."""
    data = registry.read()
    if data.get("mode") != "slurm":
        return data
    answers: dict[str, tuple] = {}
    times: dict[str, dict] = {}
    reasons: dict[str, str | None] = {}
    for job in data["jobs"]:
        if job.get("slurm_id") and job["state"] not in TERMINAL:
            try:
                info = slurm.job_info(job["slurm_id"])
            except slurm.SlurmError:
                continue  # SLURM unreachable right now: keep what we know
            if info is None:
                answers[job["name"]] = (FAILED, None, "no longer known to SLURM: final state unknown", 0)
            else:
                answers[job["name"]] = slurm.job_state(info, "--follow" in job["command"])
                why = info.get("Reason")
                reasons[job["name"]] = None if why in (None, "", "None") else why
                times[job["name"]] = {"start": info.get("StartTime"), "end": info.get("EndTime"),
                                      "submit": info.get("SubmitTime")}
    if not answers:
        return data
    with registry.update() as d:
        for job in d["jobs"]:
            if job["name"] not in answers or job["state"] in TERMINAL:
                continue
            state, code, reason, restarts = answers[job["name"]]
            job["restarts"] = max(restarts, job.get("restarts") or 0)
            if job["name"] in times:
                job["slurm_times"] = times[job["name"]]
            if state in TERMINAL:
                finish_job(job, state, code, reason)
            else:
                if state == RUNNING and not job.get("started_at"):
                    job["started_at"] = now_iso()
                job["state"] = state
                job["reason"] = reason
            job["slurm_reason"] = reasons.get(job["name"])
        end_followers(d)  # a follower whose online job ended unfinished: .online_ended
    return d


def runner_alive(data: dict) -> bool:
    runner = data.get("runner") or {}
    return procs.is_alive(runner.get("pid"), runner.get("start_time"))


def is_active(data: dict) -> bool:
    """Whether anything of the experiment may still run (a live local runner or job process, or
    a cluster job not yet ended)."""
    if data.get("mode") == "slurm":
        return not all_finished(data)
    if runner_alive(data):
        return True
    return any(j["state"] == RUNNING and procs.is_our_group(j.get("pgid"), j.get("start_time"))
               for j in data["jobs"])


def still_alive(data: dict) -> list[str]:
    """What of the experiment still runs whatever the registry says (a job recorded as ended
    whose processes are still being stopped): the local runner and job process groups that are
    still ours, or the cluster jobs SLURM still has pending or running (``COMPLETING`` included).
    :class:`~blendrl.launch.slurm.SlurmError` if SLURM cannot be asked."""
    alive = []
    if data.get("mode") == "slurm":
        for job in data["jobs"]:
            if job.get("slurm_id"):
                info = slurm.job_info(job["slurm_id"])
                if info is not None and slurm.job_state(info)[0] in (PENDING, RUNNING):
                    alive.append(f"{job['name']} (SLURM job {job['slurm_id']}: "
                                 f"{info.get('JobState')})")
        return alive
    if runner_alive(data):
        alive.append(f"the local runner (pid {data['runner']['pid']})")
    alive.extend(f"{j['name']} (process group {j['pgid']})" for j in data["jobs"]
                 if procs.is_our_group(j.get("pgid"), j.get("start_time")))
    return alive


def status_text(data: dict) -> str:
    """A table of every job of the registry."""
    mode = data.get("mode", "?")
    head = f"experiment {data['exp_id']} ({mode} mode, work dir {data.get('work_dir')})"
    if mode == "local":
        runner = data.get("runner") or {}
        alive = runner_alive(data)
        if alive:
            what = "running"
        elif runner.get("state") == RUNNING:
            what = "not running: it stopped unexpectedly (see runner.log)"
        else:
            what = f"not running ({runner.get('state', 'never started')})"
        head += f"; runner pid {runner.get('pid')}: {what}"
    rows = [("JOB", "KIND", "STATE", "EXIT", "ID", "NOTE")]
    for j in data["jobs"]:
        ident = (f"slurm {j['slurm_id']}" if j.get("slurm_id") else
                 f"pid {j['pid']}" if j.get("pid") else "-")
        note = j.get("reason") or ""
        if j.get("restarts"):
            note = (note + f" restarts={j['restarts']}").strip()
        rows.append((j["name"], j["kind"], j["state"],
                     "" if j.get("exit_code") is None else str(j["exit_code"]), ident, note))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [head]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    lines += [f"  {line}" for line in filter(None, map(pending_line, data["jobs"]))]
    c = counts(data)
    lines.append(f"  {len(data['jobs'])} jobs: " + ", ".join(
        f"{c[s]} {s}" for s in (DONE, RUNNING, PENDING, INTERRUPTED, PARTIAL, FAILED, CANCELLED)
        if s != PARTIAL or c[s]))  # partial (a follower's end) only where there is one
    return "\n".join(line.rstrip() for line in lines)


def progress_line(data: dict, elapsed: float) -> str:
    c = counts(data)
    return (f"[{elapsed:6.0f} s] {c[DONE]}/{len(data['jobs'])} done, {c[RUNNING]} running, "
            f"{c[PENDING]} pending, {c[INTERRUPTED]} interrupted, "
            + (f"{c[PARTIAL]} partial, " if c[PARTIAL] else "") + f"{c[FAILED]} failed, "
            f"{c[CANCELLED]} cancelled")


def wait(registry: Registry, out: IO[str] = sys.stdout, poll: float | None = None,
         timeout: float | None = None) -> int:
    """Block until every job has ended, printing each state change; then the summary table.
    Returns 0 if every job is done, 1 otherwise (a failure, a cancellation, a runner that died,
    or ``timeout`` seconds passed); 130 on Ctrl-C, which stops the waiting, not the experiment."""
    try:
        return _wait(registry, out, poll, timeout)
    except KeyboardInterrupt:
        exp = registry.dir.name
        print(f"\nstopped following; experiment {exp} goes on.\n"
              f"  follow it again: ./run_full_cycle.sh --status {exp} --wait\n"
              f"  look at it:      ./run_full_cycle.sh --status {exp}\n"
              f"  stop it:         ./kill_experiments.sh {exp}", file=out, flush=True)
        return 130


def _exit_lines(jobs: list[dict]) -> list[str]:
    """A line per failed job whose exit status has a meaning of its own (arguments refused,
    dataset broken, no space), with its log."""
    return [f"{j['name']}: {describe_exit(j['exit_code'])}; log: {j.get('log')}" for j in jobs
            if j["state"] == FAILED and j.get("exit_code") in EXPLAINED]


def summary_text(data: dict, registry: Registry) -> str:
    """The last words of ``--wait``: where the plots are, or what did not finish and how to go on."""
    jobs = data["jobs"]
    exp = data["exp_id"]
    lines = []
    if all(j["state"] == DONE for j in jobs):
        lines.append("all jobs done")
    else:
        lines.append(f"not every job is done: see the table above and the logs in {registry.dir}")
        lines += _exit_lines(jobs)
        blocked = blocked_jobs(jobs)
        if any(j["state"] in UNFINISHED and j["name"] not in blocked for j in jobs):
            lines.append(f"continue it (done jobs are kept, the others go on from their latest "
                         f"checkpoint): ./run_full_cycle.sh --resume with the same knobs "
                         f"(EXPERIMENT_ID={exp})")
        elif blocked:
            lines.append("--resume alone would end the same way: first fix what the logs named "
                         "above say (--resume keeps every knob: to change one, start again with "
                         "--overwrite or under another EXPERIMENT_ID)")
    plots = [j for j in jobs if j["kind"] == "plot" and j["state"] == DONE]
    if plots:
        where = data.get("plots_dir") or str(Path(data.get("work_dir", ".")) / "plots" / exp)
        lines.append(f"plots: {where}/")
    return "\n".join(lines)


def _changes(data: dict, seen: dict[str, tuple]) -> list[str]:
    """A line per job whose state (or reason) changed since ``seen`` (which is updated); a job
    first seen pending is shown only with a SLURM reason."""
    lines = []
    for j in data["jobs"]:
        key = (j["state"], j.get("reason"))
        if seen.get(j["name"]) != key:
            if j["name"] in seen or j["state"] != PENDING or j.get("slurm_reason"):
                extra = f" ({j['reason']})" if j.get("reason") and j["state"] != RUNNING else ""
                lines.append(f"  {j['name']}: {j['state']}{extra}")
            seen[j["name"]] = key
    return lines


def _new_pending_lines(data: dict, said: set[str]) -> list[str]:
    """The words on pending jobs' SLURM reasons not said yet (``said`` is updated)."""
    lines = [line for line in map(pending_line, data["jobs"]) if line and line not in said]
    said.update(lines)
    return [f"  {line}" for line in lines]


def _never_start(data: dict) -> list[str]:
    """The pending jobs whose SLURM reason waiting cannot clear."""
    return [j["name"] for j in data["jobs"] if j["state"] == PENDING
            and (r := pending_reason(j.get("slurm_reason"))) is not None and r.final]


def _why_stop(data: dict, registry: Registry, elapsed: float, timeout: float | None) -> str | None:
    """Why following should stop now ('' when every job has ended), or None to go on."""
    if all_finished(data):
        return ""
    if data.get("mode") == "local" and not runner_alive(data) and not all_finished(registry.read()):
        return f"the local runner is no longer running; see {registry.dir / 'runner.log'}"
    stuck = _never_start(data)
    if stuck:
        exp = data["exp_id"]
        return (f"stopped following: {', '.join(stuck)} can never start (see above); the other "
                f"jobs go on. Stop the experiment (./kill_experiments.sh {exp}), change the knob "
                f"named above, then ./run_full_cycle.sh --resume")
    if timeout is not None and elapsed > timeout:
        return f"stopped waiting after {timeout:.0f} s; the experiment goes on"
    return None


def _wait(registry: Registry, out: IO[str], poll: float | None, timeout: float | None) -> int:
    t0 = time.monotonic()
    data = refresh(registry)
    if poll is None:
        poll = 3.0 if data.get("mode") == "slurm" else 0.5
    seen: dict[str, tuple] = {}
    said: set[str] = set()
    last_line = ""
    while True:
        for line in _changes(data, seen) + _new_pending_lines(data, said):
            print(line, file=out, flush=True)
        line = progress_line(data, time.monotonic() - t0)
        if line.split("]", 1)[1] != last_line:
            print(line, file=out, flush=True)
            last_line = line.split("]", 1)[1]
        why = _why_stop(data, registry, time.monotonic() - t0, timeout)
        if why is not None:
            if why:
                print(why, file=out, flush=True)
            break
        time.sleep(poll)
        data = refresh(registry)
    if data.get("mode") == "local":
        data = registry.read()
    print(status_text(data), file=out, flush=True)
    print(summary_text(data, registry), file=out, flush=True)
    return 0 if all(j["state"] == DONE for j in data["jobs"]) else 1
