"""Cluster mode: every job's request tested against the cluster before anything is submitted, and
the pending reasons that waiting cannot clear.

Before submission (:func:`request_problems`): the partition's limits (``scontrol show partition``,
``sinfo``: CPUs and memory of its nodes, its time limit) against CLUSTER_CPUS, CLUSTER_MEM and
CLUSTER_TIME, each excess one sentence naming the knob; then each distinct request (the
``#SBATCH`` options of a job, its name and log aside) through ``sbatch --test-only``, its batch
script on stdin, so that whatever else the cluster refuses (an account, a QOS, a constraint, a
GPU type) is refused now rather than left pending. A cluster that accepts a request it can never
run (it pends with ``PartitionConfig``) is what this catches: ``--test-only`` refuses it.

While an experiment is followed, :func:`pending_reason` says what SLURM's reason for a pending
job (``scontrol``'s ``Reason``, squeue's ``%r``) means, whether waiting can clear it, and which
knob to change.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from blendrl.launch import slurm
from blendrl.launch.config import LaunchConfig, SlurmOptions, slurm_time_seconds
from blendrl.launch.registry import PENDING

_NOT_A_REQUEST = ("--job-name=", "--output=", "--error=", "--chdir=", "--open-mode=")
_MEM_UNITS = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}
_OTHER = "choose another CLUSTER_PARTITION"
_PARTITION = f"or {_OTHER}"


# --------------------------------------------------------------------------- the partition

@dataclass(frozen=True)
class Limits:
    """What one job may ask of a partition (None: no limit known)."""

    partition: str
    cpus: int | None
    """the most CPUs of one of its nodes (or its MaxCPUsPerNode, if lower)"""
    mem_mb: int | None
    """the most memory of one of its nodes (or its MaxMemPerNode, if lower)"""
    time: str | None
    """its MaxTime as SLURM writes it"""


def _run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _smaller(a: int | None, b: str | None) -> int | None:
    """The smaller of ``a`` and a SLURM limit ``b`` (``UNLIMITED``, or a whole number)."""
    limit = int(b) if b and b.isdigit() else None
    if a is None or limit is None:
        return a if limit is None else limit
    return min(a, limit)


def partition_limits(partition: str) -> Limits | None:
    """The limits of ``partition`` ('' = the cluster's default); None if SLURM cannot say."""
    res = _run(["scontrol", "show", "partition", "-o", *([partition] if partition else [])])
    if res is None or res.returncode != 0:
        return None
    infos = [slurm.parse_show_job(line) for line in res.stdout.splitlines() if line.strip()]
    info = next((i for i in infos if partition or i.get("Default") == "YES"), None)
    if info is None or "PartitionName" not in info:
        return None
    name = info["PartitionName"]
    nodes = _run(["sinfo", "-h", "-N", "-p", name, "-o", "%c %m"])
    text = nodes.stdout if nodes is not None and nodes.returncode == 0 else ""
    sizes = [tuple(map(int, line.split()[:2])) for line in text.splitlines()
             if re.match(r"^\s*\d+\s+\d+", line)]
    cpus = max((c for c, _ in sizes), default=None)
    mem = max((m for _, m in sizes), default=None)
    time = info.get("MaxTime")
    return Limits(name, _smaller(cpus, info.get("MaxCPUsPerNode")),
                  _smaller(mem, info.get("MaxMemPerNode")),
                  None if time in (None, "", "UNLIMITED") else time)


def mem_mb(text: str) -> float | None:
    """Megabytes of an sbatch ``--mem`` value (``16G``, ``4000``, ``512M``); None if unreadable."""
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", text.strip().upper())
    return float(m[1]) * _MEM_UNITS[m[2] or "M"] if m else None


def limit_problems(opts: SlurmOptions, limits: Limits) -> list[str]:
    """One sentence per knob asking more than ``limits`` allow."""
    p, problems, other = limits.partition, [], _PARTITION
    if limits.cpus is not None and opts.cpus > limits.cpus:
        problems.append(f"CLUSTER_CPUS={opts.cpus} is more than the {limits.cpus} CPUs of any node "
                        f"of partition {p}: set CLUSTER_CPUS to {limits.cpus} or less, {other}")
    mem = mem_mb(opts.mem) if opts.mem else None
    if limits.mem_mb is not None and mem is not None and mem > limits.mem_mb:
        problems.append(f"CLUSTER_MEM={opts.mem} is more than the {limits.mem_mb} MB of memory of "
                        f"any node of partition {p}: set CLUSTER_MEM to {limits.mem_mb}M or less "
                        f"('' for the cluster's default), {other}")
    if limits.time is not None and opts.time:
        try:
            too_long = slurm_time_seconds(opts.time) > slurm_time_seconds(limits.time)
        except ValueError:
            too_long = False
        if too_long:
            problems.append(f"CLUSTER_TIME={opts.time} is longer than the time limit of partition "
                            f"{p} ({limits.time}): set CLUSTER_TIME to {limits.time} or less "
                            f"(longer runs checkpoint and requeue), {other}")
    return problems


# --------------------------------------------------------------------------- sbatch --test-only

def test_only(script: str) -> str | None:
    """``sbatch --test-only`` of a batch script: None if the cluster would accept it, else its
    refusal in one line."""
    res = _run(["sbatch", "--test-only"], stdin=script)
    if res is None:
        return "sbatch --test-only could not be run"
    if res.returncode == 0:
        return None
    lines = [re.sub(r"^sbatch: error: ", "", ln.strip())
             for ln in (res.stderr + res.stdout).splitlines()]
    return "; ".join(dict.fromkeys(ln for ln in lines if ln)) or f"exit {res.returncode}"


_REFUSAL_KNOBS = (("node configuration", "CLUSTER_CPUS / CLUSTER_MEM / CLUSTER_GPUS"),
                  ("time limit", "CLUSTER_TIME"), ("partition", "CLUSTER_PARTITION"),
                  ("account", "CLUSTER_ACCOUNT"), ("qos", "CLUSTER_EXTRA (--qos)"),
                  ("gres", "CLUSTER_GPUS"), ("feature", "CLUSTER_EXTRA (--constraint)"),
                  ("memory", "CLUSTER_MEM"))


def refusal_knobs(message: str) -> str:
    """The knob(s) a refusal of ``sbatch --test-only`` points at."""
    low = message.lower()
    return next((knobs for word, knobs in _REFUSAL_KNOBS if word in low), "the CLUSTER_* knobs")


def _requests(cfg: LaunchConfig, jobs: list[dict]) -> dict[tuple[str, ...], list[dict]]:
    """The jobs by their request: their ``#SBATCH`` options but name, logs and folder."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for job in jobs:
        opts = slurm.directives(job, cfg.exp_id, cfg.work_dir, Path("x.log"), cfg.slurm)
        request = tuple(d for d in opts if not d.startswith(_NOT_A_REQUEST))
        groups.setdefault(request, []).append(job)
    return groups


def request_problems(cfg: LaunchConfig, jobs: list[dict], activate: Path | None) -> list[str]:
    """The problems of the requests of ``jobs`` (``Job.to_dict()``s or registry entries) on this
    cluster, one sentence each (see the module docstring); a refusal that several requests get
    (the training jobs', the plot job's) is said once."""
    limits = partition_limits(cfg.slurm.partition)
    problems = limit_problems(cfg.slurm, limits) if limits is not None else []
    if problems:  # they name the knob; --test-only would refuse the same in vaguer words
        return problems
    refused: dict[str, tuple[list[str], tuple[str, ...]]] = {}
    for request, group in _requests(cfg, jobs).items():
        log = cfg.exp_logs_dir / f"{group[0]['name']}.log"
        script = slurm.render_script(group[0], exp_id=cfg.exp_id, work_dir=cfg.work_dir, log=log,
                                     opts=cfg.slurm, venv_activate=activate)
        refusal = test_only(script)
        if refusal is not None:
            kinds = refused.setdefault(refusal, ([], request))[0]
            kinds.extend(k for k in dict.fromkeys(j["kind"] for j in group) if k not in kinds)
    return [f"{refusal_knobs(refusal)}: the cluster refuses the request of the "
            f"{_and(kinds)} jobs ({' '.join(_shown(request))}): {refusal}"
            for refusal, (kinds, request) in refused.items()]


def _and(words: list[str]) -> str:
    return " and ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


def _shown(request: tuple[str, ...]) -> list[str]:
    """The options of a request worth showing (what the knobs ask for)."""
    return [d for d in request if not d.startswith(("--ntasks=", "--requeue", "--signal="))]


# --------------------------------------------------------------------------- pending reasons

@dataclass(frozen=True)
class PendingReason:
    """What a pending job's SLURM reason means and what to do about it."""

    meaning: str
    change: str
    """the knob(s) to change, or what to do"""
    final: bool = True
    """waiting cannot clear it (False: it may clear, e.g. a node that comes back)"""


PENDING_REASONS: dict[str, PendingReason] = {
    "PartitionConfig": PendingReason(
        "the request does not fit the partition (more CPUs, memory or GPUs than its nodes have)",
        f"lower CLUSTER_CPUS / CLUSTER_MEM / CLUSTER_GPUS, {_PARTITION}"),
    "PartitionTimeLimit": PendingReason("CLUSTER_TIME is above the partition's time limit",
                                        f"lower CLUSTER_TIME, {_PARTITION}"),
    "PartitionNodeLimit": PendingReason("the number of nodes is outside the partition's limits",
                                        f"change CLUSTER_EXTRA, {_PARTITION}"),
    "BadConstraints": PendingReason("its constraints can never be satisfied",
                                    "change the --constraint of CLUSTER_EXTRA, or CLUSTER_GPUS"),
    "InvalidAccount": PendingReason("the account is not valid", "change CLUSTER_ACCOUNT"),
    "InvalidQOS": PendingReason("the QOS is not valid",
                                "change the --qos of CLUSTER_EXTRA (or CLUSTER_ACCOUNT)"),
    "DependencyNeverSatisfied": PendingReason(
        "a job it depends on ended without success",
        "see that job; stop the experiment (kill_experiments.sh), then run_full_cycle.sh --resume"),
    "ReqNodeNotAvail": PendingReason(
        "a node it needs is not available (down, drained or reserved)",
        f"if it lasts, change CLUSTER_EXTRA (--nodelist, --exclude), {_PARTITION}", final=False),
    "PartitionDown": PendingReason("the partition is down", f"if it lasts, {_OTHER}",
                                   final=False),
    "PartitionInactive": PendingReason("the partition is inactive",
                                       f"if it lasts, {_OTHER}", final=False),
}
"""The reasons that deserve words (others, such as ``Priority`` or ``Resources``, clear by
waiting and are only shown); per-job limits of a QOS or association are matched by pattern."""

_PER_JOB = re.compile(r"^(?:Assoc|QOS)Max(Wall|Cpu|Mem|GRES|Node)\w*PerJob")
_PER_JOB_KNOB = {"Wall": "CLUSTER_TIME", "Cpu": "CLUSTER_CPUS", "Mem": "CLUSTER_MEM",
                 "GRES": "CLUSTER_GPUS", "Node": "CLUSTER_EXTRA"}


def pending_reason(reason: str | None) -> PendingReason | None:
    """What SLURM's ``reason`` for a pending job means (None: nothing to say: it clears)."""
    if not reason:
        return None
    if reason in PENDING_REASONS:
        return PENDING_REASONS[reason]
    m = _PER_JOB.match(reason)
    if m:
        knob = _PER_JOB_KNOB[m[1]]
        return PendingReason(
            f"the request is above a per-job limit of its QOS or account ({knob})",
            f"lower {knob}, or change the --qos of CLUSTER_EXTRA / CLUSTER_ACCOUNT")
    return None


def pending_line(job: dict) -> str | None:
    """One sentence on a pending job whose SLURM reason deserves words (None otherwise)."""
    why = job.get("slurm_reason")
    meaning = pending_reason(why) if job.get("state") == PENDING else None
    if meaning is None:
        return None
    if meaning.final:
        return f"{job['name']} can never start (SLURM: {why}): {meaning.meaning}; {meaning.change}"
    return f"{job['name']} is waiting (SLURM: {why}): {meaning.meaning}; {meaning.change}"
