"""``kill_experiments.sh EXP``: stop exactly the jobs recorded in ``logs/EXP/registry.json``.

* Cluster mode: ``scancel`` the SLURM ids of the jobs not yet ended.
* Local mode: SIGTERM to the runner and to each running job's process group (the training
  scripts checkpoint and exit 75), then SIGKILL to whatever is left after a grace period. A
  process is signalled only if its pid *and* start time match the registry, never by name.

The stopped jobs and the jobs that had not started are recorded as cancelled. No file is deleted.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import tyro

from blendrl.cli_parse import cli
from blendrl.file_io import now_iso
from blendrl.launch import monitor, procs, slurm
from blendrl.launch.config import validate_exp_id
from blendrl.launch.registry import FILE_NAME, Registry, RegistryError
from blendrl.launch.states import CANCELLED, RUNNING, TERMINAL, finish_job


@dataclass
class KillArgs:
    """Stop every job of experiment EXP recorded in its job registry (logs/EXP/registry.json):
    scancel for SLURM jobs; SIGTERM, then SIGKILL after --grace seconds, for local process
    groups and the local runner. Deletes no data."""

    exp: tyro.conf.Positional[str]
    """the experiment id (EXPERIMENT_ID of run_full_cycle.sh)"""
    logs_dir: str = ""
    """the logs folder holding {EXP}/registry.json (default: logs/ of the project)"""
    grace: float = 10.0
    """seconds between SIGTERM and SIGKILL for local processes"""


def known_experiments(logs_dir: Path) -> list[str]:
    if not logs_dir.is_dir():
        return []
    return sorted(p.name for p in logs_dir.iterdir() if (p / FILE_NAME).is_file())


def _kill_local(registry: Registry, grace: float, out: IO[str]) -> list[str]:
    """Each running job gets exactly one SIGTERM: from the runner when it is alive (it stops
    launching, terminates its jobs and records them), from here otherwise. What still runs after
    the grace period (plus a margin for the runner's bookkeeping) gets SIGKILL from here."""
    with registry.update() as data:
        data["kill_requested"] = True
        data["kill_requested_at"] = now_iso()
        data["kill_grace"] = grace
        runner = dict(data.get("runner") or {})
        groups = [(j["name"], j["pgid"], j.get("start_time")) for j in data["jobs"]
                  if j["state"] == RUNNING and j.get("pgid")]
    stopped = []
    names = ", ".join(n for n, _, _ in groups) or "none"
    runner_target = procs.Target(runner["pid"], runner.get("start_time"), group=False) \
        if runner.get("pid") else None
    targets = {name: procs.Target(pgid, start) for name, pgid, start in groups}
    job_of = {target: name for name, target in targets.items()}
    if runner_target and runner_target.signal(signal.SIGTERM):
        print(f"SIGTERM -> local runner (pid {runner['pid']}); it stops its running jobs: {names}",
              file=out)
        stopped.append(f"runner pid {runner['pid']}")
        stopped.extend(targets)
        wait_for = grace + 5.0
    else:
        for name, target in targets.items():
            if target.signal(signal.SIGTERM):
                print(f"SIGTERM -> {name} (process group {target.pid})", file=out)
                stopped.append(name)
        wait_for = grace
    everything = list(targets.values()) + ([runner_target] if runner_target else [])
    for target in procs.kill_leftovers(everything, wait_for):
        if target is runner_target:
            print(f"SIGKILL -> local runner (pid {target.pid})", file=out)
        else:
            print(f"SIGKILL -> {job_of[target]} (process group {target.pid}): still running after "
                  f"{wait_for:g} s", file=out)
    with registry.update() as data:
        if data.get("runner") and data["runner"].get("state") == RUNNING:
            data["runner"]["state"] = CANCELLED
            data["runner"]["ended_at"] = now_iso()
    return stopped


def _kill_slurm(registry: Registry, out: IO[str]) -> list[str]:
    data = monitor.refresh(registry)
    ids = [(j["name"], j["slurm_id"]) for j in data["jobs"]
           if j.get("slurm_id") and j["state"] not in TERMINAL]
    if ids:
        slurm.cancel([i for _, i in ids])
        for name, i in ids:
            print(f"scancel {i} ({name})", file=out)
    return [f"{name} slurm {i}" for name, i in ids]


def kill_experiment(registry: Registry, grace: float = 10.0, out: IO[str] = sys.stdout) -> int:
    """Stop every job of ``registry``; returns the exit status for the command line."""
    data = registry.read()
    mode = data.get("mode")
    stopped = _kill_slurm(registry, out) if mode == "slurm" else _kill_local(registry, grace, out)
    with registry.update() as data:
        cancelled = []
        for job in data["jobs"]:
            if job["state"] not in TERMINAL:
                finish_job(job, CANCELLED, None, "cancelled by kill_experiments.sh")
                cancelled.append(job["name"])
    exp = data["exp_id"]
    if not stopped and not cancelled:
        print(f"experiment {exp}: nothing was running (every job had already ended)", file=out)
    else:
        print(f"experiment {exp}: stopped {len(stopped)} process(es)/job(s); recorded as "
              f"cancelled: {', '.join(cancelled) or 'none besides those already ended'}", file=out)
    print("no file was deleted; see --status", exp, file=out)
    return 0


def main(argv: list[str] | None, project_root: Path) -> int:
    args = cli(KillArgs, args=argv, prog="kill_experiments.sh")
    problem = validate_exp_id(args.exp)
    if problem:
        print(f"error: {problem.replace('EXPERIMENT_ID', 'experiment id')}", file=sys.stderr)
        return 2
    if args.grace < 0:
        print(f"error: --grace must be >= 0, got {args.grace}", file=sys.stderr)
        return 2
    logs_dir = Path(args.logs_dir).resolve() if args.logs_dir else project_root / "logs"
    registry = Registry.of(logs_dir, args.exp)
    if not registry.exists():
        known = known_experiments(logs_dir)
        print(f"error: no experiment {args.exp!r}: {registry.path} does not exist. Known "
              f"experiments in {logs_dir}: {', '.join(known) if known else 'none'}", file=sys.stderr)
        return 1
    try:
        return kill_experiment(registry, args.grace)
    except (RegistryError, slurm.SlurmError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], Path(__file__).resolve().parents[2]))
