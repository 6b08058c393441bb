"""The plan of an experiment: which jobs, with which commands, depending on which.

Run ids are deterministic and path-safe (the experiment id is validated, the rest are fixed words):

* online:  ``{exp}_{method}_{env}_s{seed}``, e.g. ``try1_ppo_cartpole_s0``;
* offline: ``{exp}_{method}_on_{online_method}_{env}_s{seed}``, e.g. ``try1_iql_on_ppo_cartpole_s0``
  (trained on the dataset of the online run with the same experiment, environment and seed);
* the job name is the run id; the final plotting job is called ``plots``.

A training job's command is the knob flags of :func:`blendrl.launch.flags.script_flags`, the
job's own flags (:data:`blendrl.launch.flags.JOB_FLAGS`) and the pass-through arguments. A job's
command is data (a list of arguments), so the runner and the SLURM backend run whatever
the plan says; tests give them stand-in commands.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from blendrl.contract import DATASET_MANIFEST
from blendrl.methods import METHOD_INFO
from blendrl.launch.config import LaunchConfig
from blendrl.launch.flags import pass_through, script_flags
from blendrl.launch.knobs import OFFLINE, ONLINE, Knob
from blendrl.launch.scheduling import AFTER

PLOT_JOB = "plots"
AFTEROK = "afterok"
AFTERANY = "afterany"


@dataclass
class Job:
    """One unit of work: a process to run once its dependencies allow it."""

    name: str
    kind: str
    """``online``, ``offline`` or ``plot``."""
    command: list[str]
    depends_on: list[str] = field(default_factory=list)
    dependency: str = AFTEROK
    """``afterok``: start only when every dependency exited 0 (and never if one failed);
    ``afterany``: start when every dependency has ended, however; ``after`` (an offline job with
    ``OFFLINE_START=follow``): start once its online job has started, with ``--follow``."""
    method: str | None = None
    seed: int | None = None
    run_id: str | None = None
    run_dir: str | None = None
    """The run folder this job writes (absolute)."""
    dataset_dir: str | None = None
    """Online: the dataset it writes; offline: the dataset it reads (absolute)."""
    resumable: bool = False
    """The command accepts ``--resume`` (used when SLURM requeues the job)."""
    threads: int = 1
    request: dict | None = None
    """Cluster mode: what the job asks SLURM for and the knob of each part
    (:meth:`~blendrl.launch.config.Request.to_dict`), so that a pending reason can name them."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    """What will run, what will not (and why), and what has to be removed first."""

    jobs: list[Job]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(name, reason)`` of each job left out."""
    remove: list[Path] = field(default_factory=list)
    """Existing run folders and datasets the user chose to overwrite."""

    @property
    def training_jobs(self) -> list[Job]:
        return [j for j in self.jobs if j.kind != "plot"]

    def describe(self) -> str:
        """A human-readable listing of the plan."""
        lines = []
        for job in self.jobs:
            if job.kind == "plot":
                dep = f"  [{job.dependency}: once the {len(job.depends_on)} jobs above have ended]"
            else:
                dep = f"  [{job.dependency}: {', '.join(job.depends_on)}]" if job.depends_on else ""
            lines.append(f"  {job.kind:<8} {job.name}{dep}")
        for name, reason in self.skipped:
            lines.append(f"  skipped  {name}: {reason}")
        for path in self.remove:
            lines.append(f"  remove   {path} (overwrite)")
        return "\n".join(lines) if lines else "  (nothing)"


def _online_run_id(exp_id: str, method: str, env: str, seed: int) -> str:
    return f"{exp_id}_{method}_{env}_s{seed}"


def _offline_run_id(exp_id: str, method: str, source: str, env: str, seed: int) -> str:
    return f"{exp_id}_{method}_on_{source}_{env}_s{seed}"


def _arg_path(path: Path, work_dir: Path) -> str:
    """Paths inside the work dir are passed relative to it (the jobs run there), so that what the
    scripts record stays valid when the folder is copied elsewhere; others stay absolute."""
    try:
        return str(path.relative_to(work_dir))
    except ValueError:
        return str(path)


def extra_args(cfg: LaunchConfig, kind: str, method: str) -> list[tuple[Knob, tuple[str, ...]]]:
    """``(knob, its words)`` of each pass-through knob a ``kind`` job of ``method`` gets, in the
    order they end its command (e.g. ONLINE_EXTRA_ARGS, then BLENDRL_ONLINE_EXTRA_ARGS)."""
    return [(k, getattr(cfg, k.config)) for k in pass_through(kind, METHOD_INFO[method].blendrl)]


def _extra_words(cfg: LaunchConfig, kind: str, method: str) -> list[str]:
    return [w for _, words in extra_args(cfg, kind, method) for w in words]


def _threads_of(threads: int | Mapping[str, int], kind: str) -> int:
    """The ``--threads`` of a ``kind`` job: one number for every kind, or one per kind."""
    return int(threads) if isinstance(threads, int) else int(threads.get(kind, 1))


def _request(cfg: LaunchConfig, kind: str) -> dict | None:
    return None if cfg.local else cfg.slurm.request(kind).to_dict()


def _online_job(cfg: LaunchConfig, method: str, seed: int, threads: int) -> Job:
    run_id = _online_run_id(cfg.exp_id, method, cfg.env, seed)
    cmd = [cfg.python, str(cfg.script(method)), *script_flags(ONLINE, cfg, seed),
           "--run_id", run_id, "--save_dataset",
           "--dataset_dir", _arg_path(cfg.dataset_dir, cfg.work_dir),
           "--runs_dir", _arg_path(cfg.runs_dir, cfg.work_dir), "--threads", str(threads),
           *_extra_words(cfg, ONLINE, method)]
    return Job(name=run_id, kind="online", command=cmd, method=method, seed=seed, run_id=run_id,
               run_dir=str(cfg.runs_dir / run_id), dataset_dir=str(cfg.dataset_dir / run_id),
               resumable=True, threads=threads, request=_request(cfg, ONLINE))


def _offline_job(cfg: LaunchConfig, method: str, source: str, seed: int, threads: int) -> Job:
    run_id = _offline_run_id(cfg.exp_id, method, source, cfg.env, seed)
    source_id = _online_run_id(cfg.exp_id, source, cfg.env, seed)
    cmd = [cfg.python, str(cfg.script(method)), *script_flags(OFFLINE, cfg, seed),
           "--dataset_run_id", source_id,
           "--dataset_dir", _arg_path(cfg.dataset_dir, cfg.work_dir),
           "--run_id", run_id, "--runs_dir", _arg_path(cfg.runs_dir, cfg.work_dir),
           "--threads", str(threads), *_extra_words(cfg, OFFLINE, method)]
    return Job(name=run_id, kind="offline", command=cmd, method=method, seed=seed, run_id=run_id,
               run_dir=str(cfg.runs_dir / run_id), dataset_dir=str(cfg.dataset_dir / source_id),
               resumable=True, threads=threads, request=_request(cfg, OFFLINE))


def _plot_job(cfg: LaunchConfig, after: list[str]) -> Job:
    cmd = [cfg.python, str(cfg.plot_script), cfg.exp_id,
           "--runs_dir", _arg_path(cfg.runs_dir, cfg.work_dir),
           "--output_dir", _arg_path(cfg.plots_dir, cfg.work_dir)]
    return Job(name=PLOT_JOB, kind="plot", command=cmd, depends_on=list(after),
               dependency=AFTERANY, threads=1, request=_request(cfg, "plot"))


def _non_empty(path: Path) -> bool:
    return (path.is_dir() and any(path.iterdir())) or path.is_file()


def existing_outputs(job: Job) -> list[Path]:
    """The outputs of ``job`` already on disk (its run folder; an online job's dataset too)."""
    paths = [Path(job.run_dir)] if job.run_dir else []
    if job.kind == "online" and job.dataset_dir:
        paths.append(Path(job.dataset_dir))
    return [p for p in paths if _non_empty(p)]


def _dataset_on_disk(dataset_dir: Path) -> bool:
    """A dataset exists once its manifest has been written."""
    return (dataset_dir / DATASET_MANIFEST).is_file()


_Decide = Callable[[Job, list[Path]], bool]
"""Asked for each job whose outputs exist: True to overwrite them, False to skip the job."""


def build_plan(cfg: LaunchConfig, threads: int | Mapping[str, int], decide: _Decide) -> Plan:
    """The jobs of ``cfg``: online jobs per method and seed, offline jobs per method, dataset
    source and seed, and a final plotting job when anything is to run. ``threads``: each
    training job's ``--threads``, one number or one per kind (``{"online": 4, "offline": 8}``);
    the plot job has one.

    An offline job depends on the online job producing its dataset when that job is in the plan
    (``afterok``; with ``OFFLINE_START=follow``, ``after`` and ``--follow``: it starts with it);
    runs without dependency when the dataset is on disk; is skipped (with the reason) otherwise.
    Jobs whose outputs exist are overwritten or skipped as ``decide`` says; overwriting an online
    run also replaces its dataset (both are listed in ``Plan.remove``)."""
    plan = Plan(jobs=[])
    planned_online: dict[str, Job] = {}
    for method in cfg.online_methods:
        for seed in cfg.seeds:
            job = _online_job(cfg, method, seed, _threads_of(threads, ONLINE))
            existing = existing_outputs(job)
            if existing and not decide(job, existing):
                plan.skipped.append((job.name, "exists (" + ", ".join(map(str, existing)) + ")"))
                continue
            plan.remove.extend(existing)
            plan.jobs.append(job)
            planned_online[job.run_id] = job
    for method in cfg.offline_methods:
        for source in cfg.offline_datasets:
            for seed in cfg.seeds:
                job = _offline_job(cfg, method, source, seed, _threads_of(threads, OFFLINE))
                source_id = _online_run_id(cfg.exp_id, source, cfg.env, seed)
                if source_id in planned_online:
                    job.depends_on = [source_id]
                    if cfg.offline_start == "follow":
                        job.dependency = AFTER
                        job.command.append("--follow")
                elif not _dataset_on_disk(Path(job.dataset_dir)):
                    plan.skipped.append((job.name, f"its dataset {job.dataset_dir} neither exists "
                                                   f"nor is produced by this plan (add {source} to "
                                                   "ONLINE_METHODS)"))
                    continue
                existing = existing_outputs(job)
                if existing and not decide(job, existing):
                    plan.skipped.append((job.name, "exists (" + ", ".join(map(str, existing)) + ")"))
                    continue
                plan.remove.extend(existing)
                plan.jobs.append(job)
    if plan.jobs:
        plan.jobs.append(_plot_job(cfg, [j.name for j in plan.jobs]))
    return plan
