"""The SLURM backend: one batch script per job, ``sbatch --parsable`` submission with
``afterok``/``afterany``/``after`` dependencies, job states from ``scontrol show job -o``,
``scancel``.

Each job asks for what its kind needs (:meth:`~blendrl.launch.config.SlurmOptions.request`): an
online job the CPUs of its environments and no GPU unless CLUSTER_ONLINE_GPUS says, an offline
job its own CPUs, memory and GPUs, the plot job one CPU, CLUSTER_PLOT_MEM and no GPU. A job that
asks for no GPU runs with ``CUDA_VISIBLE_DEVICES`` empty, so that ``--device auto`` cannot take a
GPU of its node that SLURM does not hide from it.

Long jobs survive the time limit: a resumable job's script asks for ``--signal=B:USR1@margin``
and ``--requeue``. The batch shell runs the job in the background and waits (``cmd & wait``), so
its USR1 trap runs at once and forwards the signal to the training script, which checkpoints and
exits 75. The job starts with USR1 ignored and the shell repeats the signal until the job exits,
so a signal that arrives before the script has installed its handler neither kills it nor is
lost. The script then calls ``scontrol requeue $SLURM_JOB_ID``: the job reruns under the same
id (so its ``afterok`` dependents keep waiting) and, seeing ``SLURM_RESTART_COUNT > 0`` and a
checkpoint, resumes with ``--resume`` (unless its command has it already: a job resubmitted by
``run_full_cycle.py --resume``). The job's log is opened in append mode, so the attempts
follow each other in one file. A job that ends with exit 75 without being requeued is
``interrupted``.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from blendrl.contract import latest_checkpoint
from blendrl.launch.config import SlurmOptions
from blendrl.launch.outcomes import EXIT_PARTIAL, EXPLAINED, describe_exit
from blendrl.launch.states import CANCELLED, DONE, FAILED, INTERRUPTED, PARTIAL, PENDING, RUNNING

EXIT_INTERRUPTED = 75

_PENDING_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
                   "RESV_DEL_HOLD", "POWER_UP_NODE"}
_RUNNING_STATES = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED",
                   "STOPPED"}
_FAILED_STATES = {"FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
                  "OUT_OF_MEMORY", "SPECIAL_EXIT", "REVOKED"}


class SlurmError(RuntimeError):
    """A SLURM command failed (or is not installed here)."""


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} is not installed here (not on PATH)") from None


def sbatch_available() -> bool:
    return all(shutil.which(t) for t in ("sbatch", "scontrol", "scancel"))


def directives(job: dict, exp_id: str, work_dir: Path, log: Path, opts: SlurmOptions) -> list[str]:
    """The ``#SBATCH`` options of ``job``'s batch script: the request of its kind
    (:meth:`SlurmOptions.request`: online and offline jobs their own CPUs, memory and GPUs, the
    plot job one CPU, its memory and no GPU) and what every job gets."""
    request = opts.request(job["kind"])
    d = [f"--job-name={exp_id}.{job['name']}", f"--output={log}", f"--error={log}",
         "--open-mode=append", f"--chdir={work_dir}", "--ntasks=1",
         f"--cpus-per-task={request.cpus}"]
    if opts.time:
        d.append(f"--time={opts.time}")
    if opts.partition:
        d.append(f"--partition={opts.partition}")
    if opts.account:
        d.append(f"--account={opts.account}")
    if request.mem:
        d.append(f"--mem={request.mem}")
    if request.gpus:
        d.append(f"--gpus={request.gpus}")
    if job.get("resumable"):
        d.append("--requeue")
        if opts.signal_margin > 0:
            d.append(f"--signal=B:USR1@{opts.signal_margin}")
    d.extend(opts.extra)
    return d


def render_script(job: dict, *, exp_id: str, work_dir: Path, log: Path, opts: SlurmOptions,
                  venv_activate: Path | None) -> str:
    """The batch script of ``job`` (a registry entry or ``Job.to_dict()``): its ``#SBATCH``
    options and environment, the ``--resume`` of a requeued attempt, the job run in the
    background with the signals passed on to it, and the requeue of a job that checkpointed."""
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {d}" for d in directives(job, exp_id, work_dir, log, opts)]
    lines += _environment(job, exp_id, work_dir, opts, venv_activate)
    lines += _resume_when_requeued(job)
    lines += _run_passing_signals_on(job)
    lines += _requeue_when_interrupted(job)
    lines.append('exit "$rc"')
    return "\n".join(lines) + "\n"


def _environment(job: dict, exp_id: str, work_dir: Path, opts: SlurmOptions,
                 venv_activate: Path | None) -> list[str]:
    """The job's folder, interpreter, GPUs and threads, and the line that starts its log."""
    q = shlex.quote
    request = opts.request(job["kind"])
    threads = int(job.get("threads") or request.cpus)
    lines = [
        f"# {job['kind']} job {job['name']} of experiment {exp_id}, written by run_full_cycle.py.",
        f"cd {q(str(work_dir))} || exit 1",
    ]
    if venv_activate is not None:
        lines.append(f"if [ -f {q(str(venv_activate))} ]; then . {q(str(venv_activate))}; fi")
    if not request.gpus:
        # asked for no GPU: it uses none, also where SLURM does not hide the node's GPUs from it
        # (no ConstrainDevices) and --device auto would otherwise take one given to another job
        lines.append("export CUDA_VISIBLE_DEVICES=  # it asked for no GPU: it uses none")
    return lines + [
        f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} PYTHONUNBUFFERED=1",
        "restart=${SLURM_RESTART_COUNT:-0}",
        f'echo "=== {job["name"]}: job ${{SLURM_JOB_ID:-?}} attempt $((restart + 1)) '
        'on $(hostname) at $(date -Is)"',
        "resume=()",
    ]


def _resume_when_requeued(job: dict) -> list[str]:
    """A requeued attempt of a resumable job continues with ``--resume`` from its checkpoint
    (unless its command has it already)."""
    if not (job.get("resumable") and job.get("run_dir") and "--resume" not in job["command"]):
        return []
    ckpt = shlex.quote(str(latest_checkpoint(job["run_dir"])))
    return [
        f'if [ "$restart" -gt 0 ] && [ -f {ckpt} ]; then',
        '    resume=(--resume); echo "=== requeued: continuing with --resume"',
        "fi",
    ]


def _run_passing_signals_on(job: dict) -> list[str]:
    """The job in the background, USR1 (time limit near) and TERM passed on to it, and its exit
    status in ``$rc``."""
    return [
        'child=""; signalled=0',
        "on_usr1() {",
        "    signalled=1",
        '    echo "=== time limit near: SIGUSR1 to the job (checkpoint and exit) at $(date -Is)"',
        '    if [ -n "$child" ]; then kill -USR1 "$child" 2>/dev/null; fi',
        "}",
        "on_term() {",
        '    echo "=== SIGTERM: passing it on to the job at $(date -Is)"',
        '    if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; fi',
        "}",
        "trap on_usr1 USR1",
        "trap on_term TERM",
        # background + wait: the traps run as soon as a signal arrives. The job starts with USR1
        # ignored, so one that comes before the script has installed its handler (SLURM may
        # signal well before the margin) cannot kill it; once signalled, USR1 is sent again
        # every 2 s until the job exits, so an early one is not lost either.
        "(trap '' USR1; exec " + shlex.join(job["command"]) + ' "${resume[@]}") &',
        "child=$!",
        'wait "$child"',
        'while kill -0 "$child" 2>/dev/null; do',
        '    if [ "$signalled" = 1 ]; then sleep 2; kill -USR1 "$child" 2>/dev/null; '
        'else wait "$child"; fi',
        "done",
        'wait "$child"; rc=$?',
        f'echo "=== {job["name"]} ended at $(date -Is) with exit status $rc"',
    ]


def _requeue_when_interrupted(job: dict) -> list[str]:
    """A resumable job that checkpointed on the time limit's signal is requeued under its id."""
    if not job.get("resumable"):
        return []
    return [
        f'if [ "$signalled" = 1 ] && [ "$rc" = {EXIT_INTERRUPTED} ]; then',
        '    echo "=== checkpoint written: requeueing job $SLURM_JOB_ID under the same id"',
        '    scontrol requeue "$SLURM_JOB_ID" && exit 0',
        '    echo "=== scontrol requeue failed"',
        "fi",
    ]


def submit_command(script: Path, dep_ids: list[str], dependency: str) -> list[str]:
    """The ``sbatch`` command line submitting ``script`` after ``dep_ids``."""
    cmd = ["sbatch", "--parsable"]
    if dep_ids:
        cmd.append(f"--dependency={dependency}:{':'.join(dep_ids)}")
        if dependency == "afterok":
            cmd.append("--kill-on-invalid-dep=yes")
    cmd.append(str(script))
    return cmd


def submit(cmd: list[str]) -> str:
    """Run an ``sbatch --parsable`` command; the job id."""
    res = _run(cmd)
    if res.returncode != 0:
        raise SlurmError(f"{shlex.join(cmd)} failed (exit {res.returncode}): "
                         f"{res.stderr.strip() or res.stdout.strip()}")
    job_id = res.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"{shlex.join(cmd)} printed no job id: {res.stdout!r}")
    return job_id


def parse_show_job(text: str) -> dict[str, str]:
    """The ``Key=Value`` fields of one line of ``scontrol show job -o``."""
    return dict(re.findall(r"(\w+)=(\S*)", text))


def job_info(slurm_id: str) -> dict[str, str] | None:
    """``scontrol show job -o ID`` as a dict; None if SLURM no longer knows the job (it ended
    longer ago than MinJobAge); :class:`SlurmError` if SLURM cannot be asked."""
    res = _run(["scontrol", "show", "job", "-o", str(slurm_id)])
    if "JobState=" in res.stdout:
        return parse_show_job(res.stdout.strip().splitlines()[0])
    if "Invalid job id" in res.stderr + res.stdout:
        return None
    raise SlurmError(f"scontrol show job {slurm_id} failed (exit {res.returncode}): "
                     f"{res.stderr.strip()}")


def job_state(info: dict[str, str], follower: bool = False
              ) -> tuple[str, int | None, str | None, int]:
    """``(state, exit code, reason, restarts)`` of a ``job_info`` dict in registry words. The exit
    code is negative when a signal ended the job; a ``follower``'s exit 3 is ``partial``."""
    slurm_state = info.get("JobState", "")
    if slurm_state in _PENDING_STATES:
        state = PENDING
    elif slurm_state in _RUNNING_STATES:
        state = RUNNING
    elif slurm_state == "COMPLETED":
        state = DONE
    elif slurm_state == "CANCELLED":
        state = CANCELLED
    elif slurm_state in _FAILED_STATES:
        state = FAILED
    else:
        state = PENDING
    code = None
    if state in (DONE, FAILED, CANCELLED) and ":" in info.get("ExitCode", ""):
        rc, sig = info["ExitCode"].split(":", 1)
        if rc.isdigit() and sig.isdigit():
            code = -int(sig) if int(sig) else int(rc)
    if state == FAILED and code == EXIT_INTERRUPTED:
        state = INTERRUPTED  # checkpointed and stopped (a signal the script did not requeue)
    if state == FAILED and code == EXIT_PARTIAL and follower:
        state = PARTIAL  # a follower whose online run stopped writing
    why = info.get("Reason")
    why = None if why in (None, "", "None") else why
    reason = None if state in (RUNNING, DONE) else slurm_state + (f" ({why})" if why else "")
    if state == FAILED and code in EXPLAINED:
        reason = f"{reason}: {describe_exit(code)}"  # arguments refused, dataset broken, no space
    restarts = int(info["Restarts"]) if info.get("Restarts", "").isdigit() else 0
    return state, code, reason, restarts


def cancel(slurm_ids: list[str]) -> None:
    """``scancel`` the given jobs (ids only, never names)."""
    if not slurm_ids:
        return
    res = _run(["scancel", *map(str, slurm_ids)])
    if res.returncode != 0:
        raise SlurmError(f"scancel {' '.join(slurm_ids)} failed: {res.stderr.strip()}")
