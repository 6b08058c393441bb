"""What ``run_full_cycle.py`` does with its :class:`~blendrl.launch.request.LaunchRequest`
(:func:`main`): show an experiment's status, or

* :func:`plan`: validate, plan, settle existing runs (or, with ``--resume``, continue the
  experiment in its registry), check the whole plan and say it;
* :func:`start`: start the experiment locally (a detached runner) or on SLURM (dependent sbatch
  jobs);
* :func:`follow`: locally on a terminal, follow the experiment to its end (``--detach``: return
  at once); with ``--wait`` anywhere.

Before anything starts (and in ``--dry_run``) the whole plan is checked: the knobs (none set
empty), every job's arguments by its own script (:mod:`blendrl.launch.plan_checks`) and, on
SLURM, every request by the cluster (:mod:`blendrl.launch.slurm_checks`). Each problem is one
line ``error: ...``; then nothing is started, no folder is made, and the exit status is 2.

Exit status: 0 started (or, when following, every job done); 1 a job failed / submission failed /
unknown experiment for ``--status``; 2 bad input, reported before anything starts; 130 Ctrl-C
while following (the experiment goes on).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

from blendrl.file_io import now_iso
from blendrl.launch import monitor, slurm
from blendrl.launch.config import (JOB_KINDS, LaunchConfig, build_config, local_parallelism,
                                   validate_exp_id)
from blendrl.launch.knob_values import ConfigError, empty_problems
from blendrl.launch.knobs import OFFLINE, ONLINE
from blendrl.launch.local_runner import start_detached
from blendrl.launch.plan import Job, Plan, build_plan
from blendrl.launch.plan_checks import check_plan
from blendrl.launch.registry import Registry, RegistryError, new_job_entry
from blendrl.launch.request import LaunchRequest
from blendrl.launch.resume import (ResumeError, ResumePlan, knob_differences, plan_resume,
                                   recorded_knobs, remove_partial)
from blendrl.launch.slurm_checks import request_problems
from blendrl.launch.states import CANCELLED, DONE, TERMINAL, finish_job


class Console:
    """Where the launcher talks and how it asks (replaceable in tests). ``interactive``: there
    is someone to ask (stdin is a terminal); ``terminal``: someone watches (stdout is one)."""

    def __init__(self, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr,
                 interactive: bool | None = None, ask: Callable[[str], str] = input,
                 terminal: bool | None = None):
        self.out, self.err = out, err
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.terminal = _isatty(out) if terminal is None else terminal
        self.ask = ask

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    def error(self, msg: str) -> None:
        print(f"error: {msg}", file=self.err, flush=True)


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@dataclass(frozen=True)
class Host:
    """Where the launcher runs and what it is given besides the request: the project's folder,
    the caller's folder, the jobs' interpreter, the environments (and the vector-state ones),
    the cores to share (None: this machine's) and the console."""

    project_root: Path
    cwd: Path
    python: str
    env_names: tuple[str, ...]
    vector_envs: tuple[str, ...]
    cores: int | None
    console: Console


def _decider(request: LaunchRequest, console: Console) -> Callable[[Job, list[Path]], bool]:
    """How to treat a job whose outputs exist: the flags, a question on a terminal, or skip."""

    def decide(job: Job, existing: list[Path]) -> bool:
        where = ", ".join(map(str, existing))
        if request.overwrite:
            return True
        if request.skip_existing:
            console.say(f"skipping {job.name}: {where} exists (--skip_existing)")
            return False
        if request.dry_run:
            console.say(f"{job.name}: {where} exists (would ask; shown as skipped)")
            return False
        if not console.interactive:
            console.say(f"skipping {job.name}: {where} exists and there is no terminal to ask "
                        "(pass --overwrite to replace it, --skip_existing to keep it quietly)")
            return False
        extra = " (and its dataset)" if job.kind == "online" else ""
        while True:
            try:
                answer = console.ask(f"{job.name}: {where} exists. Overwrite it{extra}? [y/n] ")
            except EOFError:
                console.say(f"no answer: skipping {job.name}")
                return False
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no", ""):
                return False
            console.say("please answer y or n")

    return decide


def _check_scripts(cfg: LaunchConfig) -> list[str]:
    needed = [cfg.script(m) for m in (*cfg.online_methods, *cfg.offline_methods)]
    needed.append(cfg.plot_script)
    return [f"{p} does not exist (scripts_dir {cfg.scripts_dir})" for p in needed if not p.is_file()]


def show_status(request: LaunchRequest, project_root: Path, cwd: Path, console: Console) -> int:
    """``--status EXP`` (with ``--wait``: follow it): the state of each job of experiment EXP."""
    exp = str(request.status)
    problem = validate_exp_id(exp)
    if problem:
        console.error(problem.replace("EXPERIMENT_ID", "--status"))
        return 2
    work_dir = (cwd / request.work_dir).resolve() if request.work_dir else project_root
    registry = Registry.of(work_dir / "logs", exp)
    if not registry.exists():
        console.error(f"no experiment {exp!r}: {registry.path} does not exist")
        return 1
    try:
        if request.wait:
            return monitor.wait(registry, console.out)
        console.say(monitor.status_text(monitor.refresh(registry)))
    except (RegistryError, slurm.SlurmError) as e:
        console.error(str(e))
        return 1
    return 0


def _registry_entries(cfg: LaunchConfig, plan: Plan) -> list[dict]:
    return [new_job_entry(job.to_dict(), cfg.exp_logs_dir / f"{job.name}.log") for job in plan.jobs]


def _venv_activate(cfg: LaunchConfig, project_root: Path) -> Path | None:
    act = Path(cfg.python).parent / "activate"
    if act.is_file():
        return act
    act = project_root / ".venv" / "bin" / "activate"
    return act if act.is_file() else None


def _print_sbatch_scripts(cfg: LaunchConfig, entries: list[dict], activate: Path | None,
                          console: Console) -> None:
    submitted = {j["name"] for j in entries if j["state"] != DONE}
    for job in entries:
        if job["name"] not in submitted:
            continue
        script_path = cfg.exp_logs_dir / f"{job['name']}.sbatch"
        console.say(f"----- {script_path}")
        console.say(slurm.render_script(job, exp_id=cfg.exp_id, work_dir=cfg.work_dir,
                                        log=cfg.exp_logs_dir / f"{job['name']}.log",
                                        opts=cfg.slurm, venv_activate=activate).rstrip())
        deps = [f"<id of {n}>" for n in job["depends_on"] if n in submitted]
        console.say("# submitted with: " + " ".join(slurm.submit_command(script_path, deps,
                                                                          job["dependency"])))


def _create_registry(cfg: LaunchConfig, entries: list[dict],
                     extra: dict) -> tuple[Registry, Path | None]:
    """The experiment's new registry (and where the previous one was archived, if any)."""
    registry = Registry(cfg.exp_logs_dir)
    mode = {"mode": "local", "runner": {}} if cfg.local else {"mode": "slurm"}
    archived = registry.create({"exp_id": cfg.exp_id, **mode, "work_dir": str(cfg.work_dir),
                                "plots_dir": str(cfg.plots_dir / cfg.exp_id),
                                "knobs": recorded_knobs(cfg), "kill_requested": False, **extra,
                                "jobs": entries})
    return registry, archived


def _start_local(registry: Registry, cfg: LaunchConfig, project_root: Path,
                 console: Console) -> None:
    p = start_detached(registry, cfg.python, project_root)
    n = sum(1 for j in registry.read()["jobs"] if j["state"] not in TERMINAL)
    console.say(f"started the local runner (pid {p.pid}, detached) for {n} jobs; "
                f"logs in {cfg.exp_logs_dir}/")


def _submit_slurm(registry: Registry, cfg: LaunchConfig, activate: Path | None,
                  console: Console) -> bool:
    """Submit every job of the registry not yet done (a job kept by --resume is not), each
    depending on the ids of its dependencies submitted here."""
    ids: dict[str, str] = {}
    for job in [j for j in registry.read()["jobs"] if j["state"] != DONE]:
        name = job["name"]
        script = cfg.exp_logs_dir / f"{name}.sbatch"
        script.write_text(slurm.render_script(job, exp_id=cfg.exp_id, work_dir=cfg.work_dir,
                                              log=cfg.exp_logs_dir / f"{name}.log",
                                              opts=cfg.slurm, venv_activate=activate))
        deps = [ids[d] for d in job["depends_on"] if d in ids]
        cmd = slurm.submit_command(script, deps, job["dependency"])
        try:
            job_id = slurm.submit(cmd)
        except slurm.SlurmError as e:
            console.error(f"submission of {name} failed: {e}")
            if ids:
                console.say("cancelling the jobs already submitted: " + " ".join(ids.values()))
                try:
                    slurm.cancel(list(ids.values()))
                except slurm.SlurmError as e2:
                    console.error(str(e2))
            with registry.update() as data:
                for entry in data["jobs"]:
                    if entry["state"] not in TERMINAL:
                        finish_job(entry, CANCELLED, None,
                                   "submission failed" if entry["name"] == name else
                                   "experiment submission aborted")
            return False
        ids[name] = job_id
        with registry.update() as data:
            for entry in data["jobs"]:
                if entry["name"] == name:
                    entry.update(slurm_id=job_id, sbatch_script=str(script),
                                 submit_command=cmd, submitted_at=now_iso())
        console.say(f"submitted {name}: SLURM job {job_id}"
                    + (f" ({job['dependency']} {' '.join(deps)})" if deps else ""))
    return True


def _previous(registry: Registry, cfg: LaunchConfig, resume: bool,
              console: Console) -> tuple[dict | None, int]:
    """The experiment's registry as it stands (None if there is none or, without --resume, if it
    cannot be read) and 0, or (None, exit status) when the experiment may not be started now."""
    if not registry.exists():
        if resume:
            console.error(f"--resume: no experiment {cfg.exp_id} to continue ({registry.path} "
                          "does not exist); start it without --resume")
            return None, 2
        return None, 0
    try:
        previous = monitor.refresh(registry)
    except (RegistryError, slurm.SlurmError) as e:
        if resume:
            console.error(f"--resume: cannot read the state of experiment {cfg.exp_id}: {e}")
            return None, 2
        return None, 0
    if monitor.is_active(previous):
        console.error(f"experiment {cfg.exp_id} is still running (see --status "
                      f"{cfg.exp_id}); wait for it, or stop it with kill_experiments.sh "
                      f"{cfg.exp_id}")
        return None, 2
    if resume:
        try:
            alive = monitor.still_alive(previous)
        except slurm.SlurmError as e:
            console.error(f"--resume: cannot ask SLURM about the jobs of {cfg.exp_id}: {e}")
            return None, 2
        if alive:
            console.error(f"--resume: experiment {cfg.exp_id} is still being stopped: "
                          f"{', '.join(alive)}; try again once it has ended")
            return None, 2
    return previous, 0


def _plan_resume(previous: dict, cfg: LaunchConfig, threads: dict[str, int],
                 console: Console) -> tuple[ResumePlan | None, int]:
    """The continuation of ``previous`` with the knobs of ``cfg``, or (None, 2) when refused."""
    recorded = previous.get("knobs")
    if recorded is not None:
        differences = knob_differences(recorded, recorded_knobs(cfg))
        if differences:
            console.error(f"--resume continues experiment {cfg.exp_id} with the knobs it was "
                          "started with; these differ (nothing was started):\n"
                          + "\n".join(f"  - {d}" for d in differences)
                          + "\nset them back, or start a new experiment (another EXPERIMENT_ID)")
            return None, 2
    full = build_plan(cfg, threads, lambda job, existing: True)  # every job of the knobs
    try:
        return plan_resume(previous, full, cfg), 0
    except ResumeError as e:
        console.error(f"--resume: experiment {cfg.exp_id} cannot be continued (nothing was "
                      f"started):\n{e}")
        return None, 2


def refuse(console: Console, problems: list[str]) -> int:
    """Say each problem on a line of its own (``error: ...``) and that nothing was started: 2."""
    for p in problems:
        console.error(p)
    print("nothing was started", file=console.err, flush=True)
    return 2


def _configure(request: LaunchRequest, host: Host) -> tuple[LaunchConfig | None, int]:
    """The validated configuration, or (None, 2) after saying every problem of the knobs."""
    console = host.console
    problems = empty_problems(request.knobs)
    if problems:
        return None, refuse(console, problems)
    try:
        cfg = build_config(request, project_root=host.project_root, cwd=host.cwd,
                           env_names=host.env_names, python=host.python)
    except ConfigError as e:
        return None, refuse(console, e.problems)
    missing = _check_scripts(cfg)
    if missing and not request.dry_run:
        return None, refuse(console, [f"training script missing: {m}" for m in missing])
    if missing:
        console.say("warning: training scripts missing:\n" + "\n".join(f"  - {m}" for m in missing))
    if not cfg.local:
        if any(c.isspace() for c in str(cfg.work_dir)):
            return None, refuse(console, [f"cluster mode needs a work dir without spaces "
                                          f"(#SBATCH lines): {cfg.work_dir}"])
        if not request.dry_run and not slurm.sbatch_available():
            return None, refuse(console, ["LOCAL=0 asks for SLURM, but sbatch/scontrol/scancel are "
                                          "not on PATH; run on the cluster's login node, or set "
                                          "LOCAL=1"])
    return cfg, 0


def _threads(cfg: LaunchConfig, vector_envs: tuple[str, ...], cores: int | None,
             console: Console) -> tuple[int, dict[str, int], str]:
    """``(jobs at once (0: SLURM decides), threads per job of each kind, how it runs in words)``.

    Locally every training job gets cores / jobs at once (the CLUSTER_* knobs are the cluster's,
    not this machine's); on SLURM a job gets the CPUs its kind asks for (CLUSTER_ONLINE_CPUS,
    CLUSTER_OFFLINE_CPUS, else CLUSTER_CPUS). The plot job has one either way, and on the
    vector-state environments every job has one."""
    small = cfg.env in vector_envs  # small MLPs on vector states: more torch threads only slow them
    if cfg.local:
        ncores = cores or len(os.sched_getaffinity(0))
        parallel, each, note = local_parallelism(ncores, cfg.max_parallel)
        if note:
            console.say(note)
        threads = {ONLINE: 1 if small else each, OFFLINE: 1 if small else each, "plot": 1}
        return (parallel, threads, f"local: {parallel} job(s) at once, {threads[ONLINE]} "
                                   f"thread(s) each ({ncores} cores)")
    requests = {kind: cfg.slurm.request(kind) for kind in JOB_KINDS}
    threads = {kind: 1 if small or kind == "plot" else r.cpus for kind, r in requests.items()}
    kinds = [k for k, present in ((ONLINE, cfg.online_methods), (OFFLINE, cfg.offline_methods),
                                  ("plot", True)) if present]
    how = "SLURM: " + "; ".join(f"{requests[k].jobs} {requests[k].describe()}, "
                                f"{threads[k]} thread(s)" for k in kinds)
    return 0, threads, how


def _plan_problems(cfg: LaunchConfig, threads: dict[str, int], activate: Path | None,
                   project_root: Path, console: Console) -> list[str]:
    """Every problem of the whole plan (every job the knobs make, whatever exists already): each
    job's arguments by its script, the online schedule, and on SLURM each request by the
    cluster."""
    jobs = build_plan(cfg, threads, lambda job, existing: True).jobs
    check = check_plan(cfg, jobs, project_root)
    if check.unchecked:
        console.say(f"note: the arguments of {', '.join(check.unchecked)} are not checked before "
                    "the start: they do not parse them with cli(SomeArgs)")
    problems = check.problems
    if not cfg.local and slurm.sbatch_available():
        problems += request_problems(cfg, [j.to_dict() for j in jobs], activate)
    elif not cfg.local:
        console.say("note: sbatch is not here: the requests are not tested against a cluster")
    return problems


def main(request: LaunchRequest, *, project_root: Path, cwd: Path, python: str,
         env_names: tuple[str, ...], vector_envs: tuple[str, ...] = (),
         console: Console | None = None, cores: int | None = None) -> int:
    """Run ``run_full_cycle.py`` as ``request`` (its ``Args``, typed) asks: show an experiment's
    status, or :func:`plan` it, then (unless a dry run) :func:`start` it and :func:`follow` it.

    Each job's ``--threads``: 1 for the environments in ``vector_envs`` (small networks, where
    more threads only cost) and for the plot job; otherwise cores / jobs at once (local: jobs x
    threads never exceed the cores) or the CPUs its kind asks for (SLURM). Every problem of the
    knobs, of the jobs' arguments and (SLURM) of the requests is said before anything starts
    (exit 2)."""
    host = Host(project_root, cwd, python, tuple(env_names), tuple(vector_envs), cores,
                console or Console())
    problem = request.contradiction()
    if problem:
        host.console.error(problem)
        return 2
    if request.status:
        return show_status(request, project_root, cwd, host.console)
    launch, status = plan(request, host)
    if launch is None:
        return status
    if request.dry_run:
        return _dry_run(launch, host.console)
    if not launch.to_run:
        host.console.say("nothing to resume: every job is done" if launch.resume else
                         "nothing to run: every job was skipped")
        return 0
    registry = start(launch, host)
    if registry is None:
        return 1
    return follow(registry, launch, request, host.console)


@dataclass(frozen=True)
class Launch:
    """A checked plan, ready to start (what :func:`plan` hands to :func:`start`)."""

    cfg: LaunchConfig
    entries: list[dict]
    """the jobs of the experiment's new registry"""
    remove: list[Path]
    """what has to go first: overwritten runs, or (``--resume``) partial outputs"""
    to_run: int
    """how many jobs will run (training jobs; with ``--resume``, every job not kept)"""
    parallel: int
    """local mode: jobs at once (0: SLURM decides)"""
    activate: Path | None
    """the virtual environment a batch script activates"""
    resume: bool
    """it continues a stopped experiment"""


def plan(request: LaunchRequest, host: Host) -> tuple[Launch | None, int]:
    """Validate the request, check that the experiment may start now (or, with ``--resume``, be
    continued), check the whole plan and say it: ``(launch, 0)``, or ``(None, exit status)``
    after saying why not."""
    console = host.console
    cfg, status = _configure(request, host)
    if cfg is None:
        return None, status
    previous = None
    if not request.dry_run or request.resume:
        previous, status = _previous(Registry(cfg.exp_logs_dir), cfg, request.resume, console)
        if status:
            return None, status
    parallel, threads, how = _threads(cfg, host.vector_envs, host.cores, console)
    if not cfg.local and cfg.slurm.unused_gpus():
        console.say(cfg.slurm.unused_gpus())
    continued = None
    if request.resume:
        assert previous is not None
        continued, status = _plan_resume(previous, cfg, threads, console)
        if continued is None:
            return None, status
    activate = _venv_activate(cfg, host.project_root)
    problems = _plan_problems(cfg, threads, activate, host.project_root, console)
    if problems:
        return None, refuse(console, problems)
    if continued is not None:
        console.say(f"experiment {cfg.exp_id} on {cfg.env} ({how}); resuming the registry "
                    f"created {previous.get('created_at')}:")
        console.say(continued.describe())
        entries, remove, to_run = continued.entries, continued.remove, len(continued.to_run)
    else:
        jobs = build_plan(cfg, threads, _decider(request, console))
        console.say(f"experiment {cfg.exp_id} on {cfg.env} ({how}); plan:")
        console.say(jobs.describe())
        entries, remove, to_run = _registry_entries(cfg, jobs), jobs.remove, len(jobs.training_jobs)
    return Launch(cfg, entries, remove, to_run, parallel, activate, request.resume), 0


def _dry_run(launch: Launch, console: Console) -> int:
    """The end of a dry run: on SLURM the batch scripts and how each would be submitted."""
    if not launch.cfg.local:
        _print_sbatch_scripts(launch.cfg, launch.entries, launch.activate, console)
    console.say("dry run: nothing was started")
    return 0


def start(launch: Launch, host: Host) -> Registry | None:
    """Remove what the plan replaces, create the experiment's registry, then start the local
    runner or submit the jobs to SLURM: the registry, or None when a submission failed."""
    cfg, console = launch.cfg, host.console
    _remove(launch.remove, launch.resume, console)
    extra = {"max_parallel": launch.parallel} if cfg.local else {}
    registry, archived = _create_registry(cfg, launch.entries, extra)
    if launch.resume and archived is not None:
        with registry.update() as data:
            data["resumed_from"] = archived.name
    if cfg.local:
        _start_local(registry, cfg, host.project_root, console)
    elif not _submit_slurm(registry, cfg, launch.activate, console):
        return None
    console.say(f"status: run_full_cycle.py --status {cfg.exp_id}   stop: kill_experiments.sh "
                f"{cfg.exp_id}   registry: {registry.path}")
    return registry


def follow(registry: Registry, launch: Launch, request: LaunchRequest, console: Console) -> int:
    """Follow the started experiment to its end (exit 0 if every job is done) when ``--wait``
    asks, or locally on a terminal unless ``--detach``; otherwise return at once (0)."""
    following = request.wait or (launch.cfg.local and console.terminal and not request.detach)
    if not following:
        return 0
    if not request.wait:
        console.say("following the experiment until it ends (Ctrl-C stops following, not the "
                    "experiment; --detach returns at once)")
    return monitor.wait(registry, console.out)


def _remove(remove: list[Path], resume: bool, console: Console) -> None:
    """Remove what the plan replaces: partial outputs (--resume) or overwritten runs."""
    if resume:
        for path in remove:
            console.say(f"removing {path} (partial output without a checkpoint)")
        remove_partial(remove)
        return
    for path in remove:
        console.say(f"removing {path} (overwrite)")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
