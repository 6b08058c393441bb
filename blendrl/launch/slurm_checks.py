"""Cluster mode: every job's request tested against the cluster before anything is submitted, and
the pending reasons that waiting cannot clear.

Each kind of job has its own request (:meth:`~blendrl.launch.config.SlurmOptions.request`: the
online and offline jobs their CPUs, memory and GPUs, the plot job one CPU, its memory and no
GPU), and each part of it comes from a knob: the kind's own (``CLUSTER_OFFLINE_GPUS``) or the
shared one it follows (``CLUSTER_GPUS``). Every sentence below names that knob.

Before submission (:func:`request_problems`): the partition's limits (``scontrol show partition``,
``sinfo``: CPUs, memory and GPUs of its nodes, its time limit) against each kind's request and
CLUSTER_TIME, each excess one sentence naming the knob (a shared knob that several kinds follow
is named once); then each distinct request (the ``#SBATCH`` options of a job, its name and log
aside) through ``sbatch --test-only``, its batch script on stdin, so that whatever else the
cluster refuses (an account, a QOS, a constraint, a GPU type) is refused now rather than left
pending. A cluster that accepts a request it can never run (it pends with ``PartitionConfig``)
is what this catches: ``--test-only`` refuses it.

While an experiment is followed, :func:`pending_reason` says what SLURM's reason for a pending
job (``scontrol``'s ``Reason``, squeue's ``%r``) means, whether waiting can clear it, and which
knob to change: that of the job's own request, as recorded with it in the registry.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from blendrl.launch import slurm
from blendrl.launch.config import (JOB_KINDS, LaunchConfig, Request, SlurmOptions, gpu_count,
                                   slurm_time_seconds)
from blendrl.launch.knobs import RESOURCE_PARTS, kind_knob, shared_knob
from blendrl.launch.states import PENDING

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
    gpus: dict[str, int] | None = None
    """the most GPUs of one of its nodes, by type ('': of any type); {} when no node has one;
    None: not known"""


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
    nodes = _run(["sinfo", "-h", "-N", "-p", name, "-o", "%c %m %G"])
    text = nodes.stdout if nodes is not None and nodes.returncode == 0 else ""
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s*\d+\s+\d+", line)]
    cpus = max((int(r[0]) for r in rows), default=None)
    mem = max((int(r[1]) for r in rows), default=None)
    per_node = [node_gpus(r[2]) if len(r) > 2 else None for r in rows]
    gpus: dict[str, int] | None = None
    if rows and all(g is not None for g in per_node):
        gpus = {}
        for g in per_node:
            for kind, n in g.items():
                gpus[kind] = max(gpus.get(kind, 0), n)
    time = info.get("MaxTime")
    return Limits(name, _smaller(cpus, info.get("MaxCPUsPerNode")),
                  _smaller(mem, info.get("MaxMemPerNode")),
                  None if time in (None, "", "UNLIMITED") else time, gpus)


def node_gpus(gres: str) -> dict[str, int] | None:
    """The GPUs of a node from sinfo's ``%G`` (``gpu:a100:4(S:0-1),mps:400``, ``gpu:2``,
    ``(null)``), by type ('' = all of them); None if it cannot be read."""
    found: dict[str, int] = {}
    text = re.sub(r"\([^)]*\)", "", gres.strip())
    for item in filter(None, text.split(",")):
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) == 2 and parts[1].isdigit():
            kind, n = "", int(parts[1])
        elif len(parts) == 3 and parts[2].isdigit():
            kind, n = parts[1], int(parts[2])
        else:
            return None
        if kind:
            found[kind] = found.get(kind, 0) + n
        found[""] = found.get("", 0) + n
    return found


def mem_mb(text: str) -> float | None:
    """Megabytes of an sbatch ``--mem`` value (``16G``, ``4000``, ``512M``); None if unreadable."""
    m = re.match(r"^(\d+(?:\.\d+)?)([KMGT]?)B?$", text.strip().upper())
    return float(m[1]) * _MEM_UNITS[m[2] or "M"] if m else None


def _whose(knob: str, requests: list[Request], part: str) -> str:
    """For a shared knob, the kinds that follow it: `` (the online and offline jobs follow it:
    CLUSTER_ONLINE_CPUS / CLUSTER_OFFLINE_CPUS are '')``; '' for a kind's own knob."""
    if knob != shared_knob(part):
        return ""
    own = " / ".join(k for k in (kind_knob(r.kind, part) for r in requests) if k)
    if len(requests) == 1:
        follows = "follows" if requests[0].kind == "plot" else "follow"
        return f" (the {requests[0].jobs} {follows} it: {own} is '')"
    return f" (the {_and([r.kind for r in requests])} jobs follow it: {own} are '')"


def _by_knob(requests: list[Request], part: str) -> dict[tuple[str, str], list[Request]]:
    """The requests asking ``part``, by the knob that sets it and its value."""
    groups: dict[tuple[str, str], list[Request]] = {}
    for r in requests:
        if r.asked(part) and r.source(part) is not None:
            groups.setdefault((r.source(part), str(getattr(r, part))), []).append(r)
    return groups


def limit_problems(opts: SlurmOptions, limits: Limits,
                   kinds: tuple[str, ...] = JOB_KINDS) -> list[str]:
    """One sentence per knob asking more than ``limits`` allow, for the requests of ``kinds``."""
    p, problems, other = limits.partition, [], _PARTITION
    requests = [opts.request(k) for k in kinds]
    if limits.cpus is not None:
        for (knob, value), rs in _by_knob(requests, "cpus").items():
            if int(value) > limits.cpus:
                problems.append(f"{knob}={value} is more than the {limits.cpus} CPUs of any node "
                                f"of partition {p}: set {knob} to {limits.cpus} or less"
                                f"{_whose(knob, rs, 'cpus')}, {other}")
    if limits.mem_mb is not None:
        for (knob, value), rs in _by_knob(requests, "mem").items():
            mem = mem_mb(value)
            if mem is not None and mem > limits.mem_mb:
                default = ", or '' for the cluster's default" if knob == shared_knob("mem") else ""
                problems.append(f"{knob}={value} is more than the {limits.mem_mb} MB of memory of "
                                f"any node of partition {p}: set {knob} to {limits.mem_mb}M or "
                                f"less{default}{_whose(knob, rs, 'mem')}, {other}")
    if limits.gpus is not None:
        for (knob, value), rs in _by_knob(requests, "gpus").items():
            problem = _gpu_problem(knob, value, limits.gpus, p)
            if problem:
                problems.append(f"{problem}{_whose(knob, rs, 'gpus')}, {other}")
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


def _gpu_problem(knob: str, value: str, gpus: dict[str, int], partition: str) -> str | None:
    """The start of a sentence on a ``--gpus`` value the nodes cannot give (None if they can)."""
    parsed = gpu_count(value)
    if parsed is None:
        return None
    kind, n = parsed
    if not gpus.get("", 0):
        return (f"{knob}={value} asks for GPUs, but no node of partition {partition} has any: "
                f"set {knob} to 0 for none")
    types = sorted(t for t in gpus if t)
    if kind and kind not in gpus:
        have = f"they have {', '.join(types)}" if types else "their GPUs have no type"
        return (f"{knob}={value} asks for {kind} GPUs, but no node of partition {partition} has "
                f"any ({have}): set {knob} to another type, or to a count alone")
    most = gpus[kind]
    if n > most:
        best = f"{kind}:{most}" if kind else str(most)
        return (f"{knob}={value} is more than the {most} {kind + ' ' if kind else ''}GPUs of any "
                f"node of partition {partition}: set {knob} to {best} or less")
    return None


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


_REFUSAL_PARTS = (("node configuration", RESOURCE_PARTS), ("gres", ("gpus",)),
                  ("memory", ("mem",)))
"""Refusals of a request's resources: the parts of the request they point at."""
_REFUSAL_KNOBS = (("time limit", "CLUSTER_TIME"), ("partition", "CLUSTER_PARTITION"),
                  ("account", "CLUSTER_ACCOUNT"), ("qos", "CLUSTER_EXTRA (--qos)"),
                  ("feature", "CLUSTER_EXTRA (--constraint)"))


def request_knobs(requests: list[Request], parts: tuple[str, ...] = RESOURCE_PARTS) -> str:
    """The knobs to change for the ``parts`` (cpus, mem, gpus) of ``requests``, each said once
    and only where the request asks for it: ``CLUSTER_CPUS (or CLUSTER_OFFLINE_CPUS for the
    offline jobs alone) / CLUSTER_OFFLINE_GPUS``."""
    said: list[str] = []
    for part in parts:
        asked = [r for r in requests if r.asked(part) and r.source(part)]
        shared = [r for r in asked if r.source(part) == shared_knob(part)]
        for r in asked:
            if r not in shared:
                said.append(r.source(part))
        if len(shared) == 1:
            said.append(shared[0].knob_words(part))
        elif shared:
            own = " / ".join(k for k in (kind_knob(r.kind, part) for r in shared) if k)
            said.append(f"{shared_knob(part)} (or {own} per kind)")
    return " / ".join(dict.fromkeys(said)) or "the CLUSTER_* knobs"


def refusal_knobs(message: str, requests: list[Request] | None = None) -> str:
    """The knob(s) a refusal of ``sbatch --test-only`` points at (``requests``: those it
    refused, whose resource knobs are named)."""
    low = message.lower()
    for word, parts in _REFUSAL_PARTS:
        if word in low:
            if requests is None:
                return " / ".join(shared_knob(p) for p in parts)
            return request_knobs(requests, parts)
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
    kinds = tuple(k for k in JOB_KINDS if any(j["kind"] == k for j in jobs))
    limits = partition_limits(cfg.slurm.partition)
    problems = limit_problems(cfg.slurm, limits, kinds) if limits is not None else []
    if problems:  # they name the knob; --test-only would refuse the same in vaguer words
        return problems
    refused: dict[str, tuple[list[str], tuple[str, ...]]] = {}
    for request, group in _requests(cfg, jobs).items():
        log = cfg.exp_logs_dir / f"{group[0]['name']}.log"
        script = slurm.render_script(group[0], exp_id=cfg.exp_id, work_dir=cfg.work_dir, log=log,
                                     opts=cfg.slurm, venv_activate=activate)
        refusal = test_only(script)
        if refusal is not None:
            kinds_refused = refused.setdefault(refusal, ([], request))[0]
            kinds_refused.extend(k for k in dict.fromkeys(j["kind"] for j in group)
                                 if k not in kinds_refused)
    return [f"{refusal_knobs(refusal, [cfg.slurm.request(k) for k in ks])}: the cluster refuses "
            f"the request of the {_and(ks)} jobs ({' '.join(_shown(request))}): {refusal}"
            for refusal, (ks, request) in refused.items()]


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
        f"lower {{request}}, {_PARTITION}"),
    "PartitionTimeLimit": PendingReason("CLUSTER_TIME is above the partition's time limit",
                                        f"lower CLUSTER_TIME, {_PARTITION}"),
    "PartitionNodeLimit": PendingReason("the number of nodes is outside the partition's limits",
                                        f"change CLUSTER_EXTRA, {_PARTITION}"),
    "BadConstraints": PendingReason("its constraints can never be satisfied",
                                    "change the --constraint of CLUSTER_EXTRA{or_gpus}"),
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
waiting and are only shown); per-job limits of a QOS or association are matched by pattern.
``{request}`` and ``{or_gpus}`` in a ``change`` become the knobs of the job's own request."""

_PER_JOB = re.compile(r"^(?:Assoc|QOS)Max(Wall|Cpu|Mem|GRES|Node)\w*PerJob")
_PER_JOB_KNOB = {"Wall": "CLUSTER_TIME", "Node": "CLUSTER_EXTRA"}
_PER_JOB_PART = {"Cpu": "cpus", "Mem": "mem", "GRES": "gpus"}


def job_request(job: dict | None) -> Request | None:
    """The request of a registry entry: as recorded with it, or (an entry written before requests
    were recorded) its kind's knobs, each following its shared knob."""
    if job is None:
        return None
    recorded = Request.of_entry(job)
    if recorded is not None:
        return recorded
    kind = job.get("kind", "")
    if kind == "plot":
        return Request(kind, 1, "?", "", None, shared_knob("mem"), None)
    if kind_knob(kind, "cpus") is None:
        return None
    return Request(kind, 1, "?", "?", *map(shared_knob, RESOURCE_PARTS))


def _knobs(request: Request | None, parts: tuple[str, ...]) -> str:
    if request is None:
        return " / ".join(map(shared_knob, parts))
    return request_knobs([request], parts)


def pending_reason(reason: str | None, job: dict | None = None) -> PendingReason | None:
    """What SLURM's ``reason`` for a pending job means (None: nothing to say: it clears); with
    the job's registry entry, the knobs it names are those of that job's request
    (``CLUSTER_OFFLINE_GPUS``, or ``CLUSTER_CPUS (or CLUSTER_ONLINE_CPUS for the online jobs
    alone)``), else the shared ones."""
    if not reason:
        return None
    request = job_request(job)
    if reason in PENDING_REASONS:
        r = PENDING_REASONS[reason]
        asks_gpus = request is None or request.asked("gpus")
        or_gpus = f", or {_knobs(request, ('gpus',))}" if asks_gpus else ""
        return PendingReason(r.meaning, r.change.format(request=_knobs(request, RESOURCE_PARTS),
                                                        or_gpus=or_gpus), r.final)
    m = _PER_JOB.match(reason)
    if m:
        part = _PER_JOB_PART.get(m[1])
        knob = _PER_JOB_KNOB[m[1]] if part is None else _knobs(request, (part,))
        return PendingReason(
            f"the request is above a per-job limit of its QOS or account ({knob})",
            f"lower {knob}, or change the --qos of CLUSTER_EXTRA / CLUSTER_ACCOUNT")
    return None


def pending_line(job: dict) -> str | None:
    """One sentence on a pending job whose SLURM reason deserves words (None otherwise), naming
    the knobs of its own request."""
    why = job.get("slurm_reason")
    meaning = pending_reason(why, job) if job.get("state") == PENDING else None
    if meaning is None:
        return None
    if meaning.final:
        return f"{job['name']} can never start (SLURM: {why}): {meaning.meaning}; {meaning.change}"
    return f"{job['name']} is waiting (SLURM: {why}): {meaning.meaning}; {meaning.change}"
