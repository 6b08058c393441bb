"""Continuing a stopped experiment: ``run_full_cycle.py --resume``.

The experiment is the one in its registry (``logs/{exp}/registry.json``), with the knobs it was
started with. :func:`plan_resume` turns that registry and the plan of the same knobs into the
jobs of a new registry:

* a job that is ``done`` is kept as it is and not run again;
* any other job (interrupted, failed, cancelled, killed with its machine, never started) runs
  again: with ``--resume`` when its run folder holds a checkpoint (``checkpoints/latest.pt``),
  otherwise afresh, after its partial outputs have been removed -- exactly the run folder (and,
  for an online job, the dataset) the plan names for that job, and only when what is there says
  it is that job's (``run.json`` / the dataset manifest name its run id and experiment);
* the plots are drawn again when anything else runs;
* dependencies hold as before, on the jobs that run again (a kept job has already succeeded).

Knobs that change what the runs compute (:func:`recorded_knobs`) are recorded in the registry
when an experiment starts; :func:`knob_differences` lists those that differ on ``--resume``,
which is then refused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blendrl.contract import DATASET_MANIFEST, RUN_JSON, latest_checkpoint
from blendrl.launch import knobs
from blendrl.launch.config import LaunchConfig
from blendrl.launch.plan import Job, Plan, existing_outputs
from blendrl.launch.registry import new_job_entry
from blendrl.launch.states import DONE

DATASETS_KNOB = "USE_LARGE_DATASET_PATH/LARGE_DATASET_PATH (datasets folder)"


class ResumeError(ValueError):
    """The experiment cannot be continued as asked; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))


def _inside(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def recorded_knobs(cfg: LaunchConfig) -> dict[str, Any]:
    """The knobs of ``cfg`` that decide which runs there are and what they compute (those marked
    ``recorded`` in the knob table, and the datasets folder), keyed by their variable names, as
    JSON values (stored in the registry). Where and how the jobs run (LOCAL, MAX_PARALLEL,
    CLUSTER_*) is not among them: it may change on ``--resume``."""
    recorded = {k.env_var: _json(getattr(cfg, k.config)) for k in knobs.KNOBS if k.recorded}
    return {**recorded, DATASETS_KNOB: _inside(cfg.dataset_dir, cfg.work_dir)}


def _show(value: Any) -> str:
    if isinstance(value, list):
        return repr(" ".join(str(v) for v in value))
    return repr(value)


def knob_differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One line per knob whose value now differs from the one recorded."""
    return [f"{name}: {_show(recorded[name])} when the experiment started, {_show(now[name])} now"
            for name in now if name in recorded and recorded[name] != now[name]]


def command_key(command: list[str]) -> list[str]:
    """A job's command without what may change between attempts (the interpreter, the folder of
    the script, ``--threads N`` and ``--resume``) and without the order of its flags: each
    ``--flag`` with the words after it is one option, and the options are sorted by flag name,
    keeping the order of a flag given twice (where the last one wins). Two commands with the same
    key mean the same run, whichever version of the launcher wrote them."""
    options: list[list[str]] = []
    for word in command[2:]:
        if word.startswith("--") or not options:
            options.append([word])
        else:
            options[-1].append(word)
    options = [o for o in options if o[0] not in ("--threads", "--resume")]
    key = [Path(command[1]).name] if len(command) > 1 else []
    for option in sorted(options, key=lambda o: o[0]):
        key += option
    return key


def _owner_problem(path: Path, job: Job, exp_id: str) -> str | None:
    """None if ``path`` (a partial output of ``job``) may be removed, else why not."""
    if path.is_symlink():
        return f"{path} is a symbolic link; not removing it (remove it yourself, then --resume)"
    is_dataset = job.kind == "online" and job.dataset_dir is not None and path == Path(job.dataset_dir)
    meta_file = path / (DATASET_MANIFEST if is_dataset else RUN_JSON)
    if not meta_file.is_file():
        return None  # nothing written yet but partial files: this job's own path, from the plan
    try:
        meta = json.loads(meta_file.read_text())
        if is_dataset:
            meta = meta.get("metadata", {})
        owner = (meta.get("run_id"), meta.get("exp_id"))
    except (OSError, ValueError, AttributeError) as e:
        return f"cannot read {meta_file} ({e}); not removing {path}"
    if owner != (job.run_id, exp_id):
        return (f"{path} holds run {owner[0]!r} of experiment {owner[1]!r}, not {job.run_id!r} of "
                f"{exp_id!r}; not removing it (move it away yourself, then --resume)")
    return None


@dataclass
class ResumePlan:
    """The jobs of the continued experiment and the partial outputs to remove first."""

    entries: list[dict]
    """The new registry's jobs, in the old registry's order."""
    remove: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def to_run(self) -> list[dict]:
        return [e for e in self.entries if e.get("resume") != "kept"]

    @property
    def training_to_run(self) -> list[dict]:
        return [e for e in self.to_run if e["kind"] != "plot"]

    def describe(self) -> str:
        return "\n".join(self.lines) if self.lines else "  (nothing)"


def _was(old: dict) -> str:
    if old.get("reason") and old["state"] != DONE:
        return f"{old['state']}: {old['reason']}"
    if old.get("exit_code") is not None:
        return f"{old['state']}, exit {old['exit_code']}"
    return old["state"]


def plan_resume(old: dict, plan: Plan, cfg: LaunchConfig) -> ResumePlan:
    """The continuation of the experiment recorded in ``old`` (a registry), given ``plan``: the
    full plan of the current knobs (every job, nothing skipped). Raises :class:`ResumeError`
    when the registry's jobs are not those of the plan or a partial output is not the job's."""
    planned = {j.name: j for j in plan.jobs}
    _check_same_jobs(old, planned)
    names = [j["name"] for j in old["jobs"]]
    by_name = {j["name"]: j for j in old["jobs"]}
    rerun_training = any(j["state"] != DONE for j in old["jobs"] if j["kind"] != "plot")
    result = ResumePlan(entries=[])
    problems: list[str] = []
    for name in names:
        prev, job = by_name[name], planned[name]
        if prev["state"] == DONE and (job.kind != "plot" or not rerun_training):
            entry = dict(prev)
            entry.update(resume="kept", reason="done before --resume (kept)")
            result.entries.append(entry)
            result.lines.append(f"  kept     {name} (done)")
        else:
            _run_again(job, prev, names, by_name, cfg, result, problems)
    if problems:
        raise ResumeError(problems)
    for path in result.remove:
        result.lines.append(f"  remove   {path} (partial, without a checkpoint)")
    return result


def _check_same_jobs(old: dict, planned: dict[str, Job]) -> None:
    """:class:`ResumeError` unless every job of the registry is a job of the plan (and, in a
    registry without recorded knobs, has the same command)."""
    names = [j["name"] for j in old["jobs"]]
    unknown = [n for n in names if n not in planned]
    if unknown:
        raise ResumeError([f"job {n} of the registry is not a job of the experiment as configured "
                           "now (set the knobs back to those it was started with)" for n in unknown])
    if "knobs" not in old:  # a registry written before the knobs were recorded
        changed = [j["name"] for j in old["jobs"]
                   if command_key(j["command"]) != command_key(planned[j["name"]].command)]
        if changed:
            raise ResumeError([f"job {n}: the command differs from the one it was started with "
                               "(set the knobs back)" for n in changed])


def _run_again(job: Job, prev: dict, names: list[str], by_name: dict[str, dict],
               cfg: LaunchConfig, result: ResumePlan, problems: list[str]) -> None:
    """Add ``job`` (``prev`` in the registry, whose jobs are ``names``, ``by_name``) to ``result``
    to run again: from its checkpoint, or afresh once its partial outputs are removed (a partial
    output that is not the job's own is a problem)."""
    name = job.name
    job.depends_on = [d for d in job.depends_on if d in by_name]
    if job.kind == "plot":
        job.depends_on = [n for n in names if n != name]
    checkpoint = latest_checkpoint(job.run_dir) if job.run_dir else None
    partial: list[Path] = []
    if job.resumable and checkpoint is not None and checkpoint.is_file():
        job.command = [*job.command, "--resume"]
        how, what = "checkpoint", f"continue from {checkpoint}"
    else:
        partial = existing_outputs(job)
        problems += filter(None, (_owner_problem(path, job, cfg.exp_id) for path in partial))
        how = "clean" if partial else "start"
        what = ("start afresh (no checkpoint; its partial outputs are removed first)" if partial
                else "start")
    dep = (f" [{job.dependency}: "
           + ", ".join(d + (" (done)" if by_name[d]["state"] == DONE else "")
                       for d in job.depends_on) + "]"
           if job.depends_on and job.kind != "plot" else "")
    if job.kind == "plot":
        dep = " [once the jobs above have ended]"
    result.lines.append(f"  {job.kind:<8} {name}: {what}{dep} (was {_was(prev)})")
    entry = new_job_entry(job.to_dict(), cfg.exp_logs_dir / f"{name}.log")
    entry.update(resume=how, previous_state=prev["state"])
    result.entries.append(entry)
    result.remove.extend(partial)


def remove_partial(paths: list[Path]) -> None:
    """Remove the partial outputs :func:`plan_resume` checked (never following a link)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
