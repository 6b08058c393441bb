"""The runs an experiment planned, from the launcher's job registry (``logs/{exp}/registry.json``,
docs/FORMATS.md), so the report can name a planned run that left no run behind at all.

Without a registry the report infers the plan from the runs it finds
(:func:`blendrl.plotting.summary.summarize`): every seed seen in an env is expected of every
series in that env, every mark one of a series' runs (or an offline run's online partner) evaluated
is expected of all its runs, and a run that recorded its ``intervals`` argument is expected to
evaluate that many times. A run whose folder is missing altogether is then listed only when
another series has its seed. With a registry, its training jobs are the planned runs, each by run
id. Nothing here raises on a bad registry: it becomes a warning and the report falls back to the
inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from blendrl.contract import RUN_JSON
from blendrl.methods import METHODS
from blendrl.plotting.collect import (MISSING, Collection, load_json, whole_number, seed_name,
                                      series_label)

REGISTRY_FILE = "registry.json"
"""The launcher's job registry in ``{work_dir}/logs/{exp}/`` (:mod:`blendrl.launch.registry`)."""
TRAINING_KINDS = ("online", "offline")


@dataclass(frozen=True)
class PlannedRun:
    """A training job of the registry."""

    run_id: str
    method: str
    seed: int | None
    source_method: str | None
    """offline: the method of the online job whose dataset it reads (None when not known)"""
    job_state: str
    """the job's state in words (``"pending"``, ``"failed (exit 1): ..."``), empty if unknown"""


@dataclass(frozen=True)
class AbsentRun:
    """A planned run of which no run of the experiment was found, and why."""

    planned: PlannedRun
    why: str

    @property
    def key(self) -> tuple[str, str | None]:
        """(method, dataset source): the series it belongs to, whatever its env."""
        return self.planned.method, self.planned.source_method

    @property
    def line(self) -> str:
        p = self.planned
        label = series_label(p.method, p.source_method, METHODS.get(p.method, "online"))
        return f"{label}: {seed_name(p.seed)} ({p.run_id}) has no run: {self.why} (no result at any mark)"


def default_registry_path(runs_dir: Path, exp_id: str) -> Path:
    """Where the launcher keeps the registry of ``exp_id`` when ``runs_dir`` is its
    ``{work_dir}/out/runs``: ``{work_dir}/logs/{exp_id}/registry.json``."""
    return Path(runs_dir).absolute().parent.parent / "logs" / exp_id / REGISTRY_FILE


def _job_state(job: dict) -> str:
    state = job.get("state") if isinstance(job.get("state"), str) else ""
    code = whole_number(job.get("exit_code"))
    reason = job.get("reason") if isinstance(job.get("reason"), str) else ""
    return state + (f" (exit {code})" if code is not None and state else "") + \
        (f": {reason}" if reason and state else "")


def _planned_from_jobs(jobs: list[Any]) -> list[PlannedRun]:
    """The training jobs among registry entries (entries without a run id or method skipped)."""
    entries = [j for j in jobs if isinstance(j, dict) and j.get("kind") in TRAINING_KINDS
               and isinstance(j.get("run_id"), str) and j.get("method") in METHODS]
    method_of = {j["run_id"]: j["method"] for j in entries}
    out = []
    for j in entries:
        source = None
        if j["kind"] == "offline" and isinstance(j.get("dataset_dir"), str):
            source = method_of.get(Path(j["dataset_dir"]).name)
        out.append(PlannedRun(j["run_id"], j["method"], whole_number(j.get("seed")), source,
                              _job_state(j)))
    return out


def read_planned_runs(path: Path, exp_id: str, warnings: list[str]) -> list[PlannedRun] | None:
    """The training jobs of the registry at ``path``; None (warned unless it is missing) when
    there is no usable registry of ``exp_id`` there."""
    data, problem = load_json(Path(path))
    if problem == MISSING:
        return None
    if problem is not None or not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        warnings.append(f"{path}: not a readable job registry ({problem or 'no jobs list'}); the "
                        "planned runs are inferred from the runs found")
        return None
    if data.get("exp_id") != exp_id:
        warnings.append(f"{path}: a registry of experiment {data.get('exp_id')!r}, not {exp_id!r}; "
                        "ignoring it")
        return None
    return _planned_from_jobs(data["jobs"])


def _why_absent(run_id: str, col: Collection) -> str:
    """Why the folder ``runs_dir/run_id`` gave no run of the experiment."""
    folder = col.runs_dir / run_id
    if not folder.is_dir():
        return f"no run folder {run_id} under {col.runs_dir}"
    if run_id in col.unreadable:
        return col.unreadable[run_id]
    if not (folder / RUN_JSON).is_file():
        return "its folder has no run.json (not started, or killed before its first write)"
    return f"its run.json is not a run of experiment {col.exp_id}"


def absent_runs(planned: Sequence[PlannedRun], col: Collection) -> list[AbsentRun]:
    """The planned runs of which ``col`` holds no run, each with why (its job's state added)."""
    found = {r.run_id for r in col.runs}
    out = []
    for p in planned:
        if p.run_id in found:
            continue
        why = _why_absent(p.run_id, col)
        out.append(AbsentRun(p, why + (f"; its job is {p.job_state}" if p.job_state else "")))
    return out
