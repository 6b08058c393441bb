"""The whole plan checked before anything starts (and in ``--dry_run``).

Each training job's full argument list goes through its script's own parsing and checks
(:mod:`blendrl.launch.script_args`); what a script refuses becomes one sentence naming the knob
to change (the pass-through knob whose words the message names, else the knob whose flag it
names, else the pass-through knobs the job got). An online job must also collect at least one
rollout (``num_envs`` x ``num_steps``, as its script resolves them) and at least one per
evaluation interval: ONLINE_STEPS and INTERVALS_COUNT are checked against it.

The same sentence from several jobs (seeds, or both scripts of a kind) is said once, with the
scripts it concerns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from blendrl.launch.config import LaunchConfig
from blendrl.launch.flags import knob_of_flag
from blendrl.launch.knobs import ONLINE
from blendrl.launch.plan import Job, extra_args
from blendrl.launch.script_args import CheckError, Verdict, check_jobs, requests_of

_SEE_HELP = re.compile(r"\s*\(see \S+ --help\)$")
_FLAG = re.compile(r"--([A-Za-z][\w-]*)")


@dataclass
class PlanCheck:
    """The problems of a plan (one sentence each) and what could not be checked."""

    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    """the scripts whose arguments were not checked (they name no Args class)"""


def _flag_names(words: list[str] | tuple[str, ...]) -> set[str]:
    """The field names of the flags among ``words`` (``--no-anneal-lr`` -> anneal_lr and
    no_anneal_lr)."""
    names = {w[2:].split("=", 1)[0].replace("-", "_") for w in words if w.startswith("--")}
    return names | {n[3:] for n in names if n.startswith("no_")}


def blame(cfg: LaunchConfig, job: Job, message: str) -> str:
    """The knob(s) to change for a refusal ``message`` of ``job``'s script."""
    named = _flag_names(["--" + f for f in _FLAG.findall(message)])
    extras = extra_args(cfg, job.kind, job.method)
    hit = [k.env_var for k, words in extras if named & _flag_names(words)]
    if hit:
        return " / ".join(hit)
    knobs = [k for k in (knob_of_flag(f, job.kind) for f in sorted(named)) if k is not None]
    if knobs:
        return knobs[0].env_var
    given = [k.env_var for k, words in extras if words]
    return " / ".join(given) if given else "the job's arguments"


def schedule_problem(cfg: LaunchConfig, rollout: tuple[int, int]) -> str | None:
    """ONLINE_STEPS and INTERVALS_COUNT against an online script's rollout ``(num_envs,
    num_steps)``: at least one rollout in all, and at least one per interval."""
    steps, intervals = knob_of_flag("total_timesteps", ONLINE), knob_of_flag("intervals", ONLINE)
    envs, length = rollout
    size, total, k = envs * length, cfg.online_steps, cfg.intervals
    what = f"num_envs {envs} x num_steps {length}"
    if total < size:
        return (f"{steps.env_var} {total} is less than one rollout of the online script ({size} "
                f"transitions: {what}): "
                f"raise {steps.env_var} to {size} or more (or lower --num_envs / --num_steps)")
    if k > total // size:
        return (f"{intervals.env_var} {k} is more than the {total // size} rollouts of "
                f"{steps.env_var} {total} ({size} transitions each: {what}): lower "
                f"{intervals.env_var} to {total // size} or less, or raise {steps.env_var} to "
                f"{k * size} or more")
    return None


@dataclass(frozen=True)
class _Finding:
    """One problem of a job, before the scripts it concerns are named."""

    text: str
    blamed: str | None = None
    """a refusal: the knob(s) to change (None: ``text`` is the whole sentence)"""
    see_help: bool = False

    def sentence(self, scripts: list[str]) -> str:
        who = " and ".join(scripts)
        if self.blamed is None:
            return f"{self.text} [{who}]"
        see = f" (see {scripts[0]} --help)" if self.see_help else ""
        return f"{self.blamed}: {who} refused the arguments: {self.text}{see}"


def _finding(cfg: LaunchConfig, job: Job, verdict: Verdict) -> _Finding | None:
    """The problem of a job's verdict; None if its arguments are accepted."""
    if verdict.rollout is not None:
        problem = schedule_problem(cfg, verdict.rollout)
        if problem is not None:
            return _Finding(problem)
    if verdict.error is None:
        return None
    message = _SEE_HELP.sub("", verdict.error)
    return _Finding(message, blame(cfg, job, message), message != verdict.error)


def _group(cfg: LaunchConfig, jobs: list[Job], verdicts: list[Verdict]) -> list[str]:
    """One sentence per distinct problem, naming the scripts it comes from."""
    by_name = {j.name: j for j in jobs}
    scripts: dict[_Finding, list[str]] = {}
    for v in verdicts:
        job = by_name[v.job]
        finding = _finding(cfg, job, v)
        if finding is not None:
            names = scripts.setdefault(finding, [])
            if Path(job.command[1]).name not in names:
                names.append(Path(job.command[1]).name)
    return [finding.sentence(names) for finding, names in scripts.items()]


def check_plan(cfg: LaunchConfig, jobs: list[Job], package_root: Path) -> PlanCheck:
    """The problems of the training jobs among ``jobs``, each as one sentence."""
    training = [j for j in jobs if j.kind != "plot"]
    requests, unchecked = requests_of(training)
    result = PlanCheck(unchecked=sorted({Path(j.command[1]).name for j in unchecked}))
    try:
        verdicts = check_jobs(requests, cfg.python, package_root, cfg.work_dir)
    except CheckError as e:
        result.problems.append(str(e))
        return result
    result.problems = _group(cfg, training, verdicts)
    return result
