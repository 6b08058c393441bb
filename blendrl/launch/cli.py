"""What ``run_full_cycle.py`` does: validate, plan, settle existing runs, then start the
experiment locally (a detached runner) or on SLURM (dependent sbatch jobs); or show its status;
optionally wait for it.

Exit status: 0 started (or, with ``--wait``, every job done); 1 a job failed / submission failed /
unknown experiment for ``--status``; 2 bad input, reported before anything starts.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import IO, Any, Callable

from blendrl.launch import monitor, slurm
from blendrl.launch.config import (ConfigError, LaunchConfig, build_config, local_parallelism,
                                   validate_exp_id)
from blendrl.launch.local_runner import start_detached
from blendrl.launch.plan import Job, Plan, build_plan
from blendrl.launch.registry import (CANCELLED, Registry, RegistryError, finish_job,
                                     new_job_entry, now_iso)

ACTION_FIELDS = ("dry_run", "status", "wait", "overwrite", "skip_existing")


class Console:
    """Where the launcher talks and how it asks (replaceable in tests)."""

    def __init__(self, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr,
                 interactive: bool | None = None, ask: Callable[[str], str] = input):
        self.out, self.err = out, err
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.ask = ask

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    def error(self, msg: str) -> None:
        print(f"error: {msg}", file=self.err, flush=True)


def _decider(values: dict, console: Console) -> Callable[[Job, list[Path]], bool]:
    """How to treat a job whose outputs exist: the flags, a question on a terminal, or skip."""

    def decide(job: Job, existing: list[Path]) -> bool:
        where = ", ".join(map(str, existing))
        if values["overwrite"]:
            return True
        if values["skip_existing"]:
            console.say(f"skipping {job.name}: {where} exists (--skip_existing)")
            return False
        if values["dry_run"]:
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


def show_status(values: dict, project_root: Path, cwd: Path, console: Console) -> int:
    exp = str(values["status"])
    problem = validate_exp_id(exp)
    if problem:
        console.error(problem.replace("EXPERIMENT_ID", "--status"))
        return 2
    work_dir = (cwd / values["work_dir"]).resolve() if values.get("work_dir") else project_root
    registry = Registry.of(work_dir / "logs", exp)
    if not registry.exists():
        console.error(f"no experiment {exp!r}: {registry.path} does not exist")
        return 1
    try:
        if values["wait"]:
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


def _print_sbatch_scripts(cfg: LaunchConfig, plan: Plan, activate: Path | None,
                          console: Console) -> None:
    for job in plan.jobs:
        d = job.to_dict()
        script_path = cfg.exp_logs_dir / f"{job.name}.sbatch"
        console.say(f"----- {script_path}")
        console.say(slurm.render_script(d, exp_id=cfg.exp_id, work_dir=cfg.work_dir,
                                        log=cfg.exp_logs_dir / f"{job.name}.log", opts=cfg.slurm,
                                        venv_activate=activate).rstrip())
        deps = [f"<id of {n}>" for n in job.depends_on]
        console.say("# submitted with: " + " ".join(slurm.submit_command(script_path, deps,
                                                                          job.dependency)))


def _start_local(cfg: LaunchConfig, plan: Plan, parallel: int, project_root: Path,
                 console: Console) -> Registry:
    registry = Registry(cfg.exp_logs_dir)
    registry.create({"exp_id": cfg.exp_id, "mode": "local", "work_dir": str(cfg.work_dir),
                     "max_parallel": parallel, "kill_requested": False, "runner": {},
                     "jobs": _registry_entries(cfg, plan)})
    p = start_detached(registry, cfg.python, project_root)
    console.say(f"started the local runner (pid {p.pid}, detached) for {len(plan.jobs)} jobs; "
                f"logs in {cfg.exp_logs_dir}/")
    return registry


def _submit_slurm(cfg: LaunchConfig, plan: Plan, activate: Path | None,
                  console: Console) -> tuple[Registry, bool]:
    registry = Registry(cfg.exp_logs_dir)
    registry.create({"exp_id": cfg.exp_id, "mode": "slurm", "work_dir": str(cfg.work_dir),
                     "kill_requested": False, "jobs": _registry_entries(cfg, plan)})
    ids: dict[str, str] = {}
    for job in plan.jobs:
        script = cfg.exp_logs_dir / f"{job.name}.sbatch"
        script.write_text(slurm.render_script(job.to_dict(), exp_id=cfg.exp_id,
                                              work_dir=cfg.work_dir,
                                              log=cfg.exp_logs_dir / f"{job.name}.log",
                                              opts=cfg.slurm, venv_activate=activate))
        cmd = slurm.submit_command(script, [ids[d] for d in job.depends_on], job.dependency)
        try:
            job_id = slurm.submit(cmd)
        except slurm.SlurmError as e:
            console.error(f"submission of {job.name} failed: {e}")
            if ids:
                console.say("cancelling the jobs already submitted: " + " ".join(ids.values()))
                try:
                    slurm.cancel(list(ids.values()))
                except slurm.SlurmError as e2:
                    console.error(str(e2))
            with registry.update() as data:
                for entry in data["jobs"]:
                    finish_job(entry, CANCELLED, None,
                               "submission failed" if entry["name"] == job.name else
                               "experiment submission aborted")
            return registry, False
        ids[job.name] = job_id
        with registry.update() as data:
            for entry in data["jobs"]:
                if entry["name"] == job.name:
                    entry.update(slurm_id=job_id, sbatch_script=str(script),
                                 submit_command=cmd, submitted_at=now_iso())
        console.say(f"submitted {job.name}: SLURM job {job_id}"
                    + (f" ({job.dependency} {' '.join(ids[d] for d in job.depends_on)})"
                       if job.depends_on else ""))
    return registry, True


def main(values: dict[str, Any], *, project_root: Path, cwd: Path, python: str,
         env_names: tuple[str, ...], vector_envs: tuple[str, ...] = (),
         console: Console | None = None, cores: int | None = None) -> int:
    """Run ``run_full_cycle.py`` with the flag values ``values`` (its ``Args`` as a dict).

    Each job's ``--threads``: 1 for the environments in ``vector_envs`` (small networks, where
    more threads only cost); otherwise cores / jobs at once (local) or the job's CPUs (SLURM).
    Either way, jobs x threads never exceed the cores."""
    console = console or Console()
    if values["overwrite"] and values["skip_existing"]:
        console.error("--overwrite and --skip_existing contradict each other: pick one")
        return 2
    if values.get("status"):
        return show_status(values, project_root, cwd, console)
    knob_values = {k: v for k, v in values.items() if k not in ACTION_FIELDS}
    try:
        cfg = build_config(knob_values, project_root=project_root, cwd=cwd, env_names=env_names,
                           python=python)
    except ConfigError as e:
        console.error("invalid configuration (nothing was started):\n" + str(e))
        return 2
    missing = _check_scripts(cfg)
    if missing:
        listing = "\n".join(f"  - {m}" for m in missing)
        if not values["dry_run"]:
            console.error("training scripts missing (nothing was started):\n" + listing)
            return 2
        console.say("warning: training scripts missing:\n" + listing)
    if not cfg.local:
        if any(c.isspace() for c in str(cfg.work_dir)):
            console.error(f"cluster mode needs a work dir without spaces (#SBATCH lines): "
                          f"{cfg.work_dir}")
            return 2
        if not values["dry_run"] and not slurm.sbatch_available():
            console.error("LOCAL=0 asks for SLURM, but sbatch/scontrol/scancel are not on PATH; "
                          "run on the cluster's login node, or set LOCAL=1")
            return 2
    registry = Registry(cfg.exp_logs_dir)
    if registry.exists() and not values["dry_run"]:
        try:
            previous = monitor.refresh(registry)
        except (RegistryError, slurm.SlurmError):
            previous = None
        if previous is not None and monitor.is_active(previous):
            console.error(f"experiment {cfg.exp_id} is still running (see --status "
                          f"{cfg.exp_id}); wait for it, or stop it with kill_experiments.sh "
                          f"{cfg.exp_id}")
            return 2

    if cfg.local:
        ncores = cores or len(os.sched_getaffinity(0))
        parallel, threads, note = local_parallelism(ncores, cfg.max_parallel)
        if note:
            console.say(note)
    else:
        ncores, parallel, threads = cfg.slurm.cpus, 0, cfg.slurm.cpus
    if cfg.env in vector_envs:
        threads = 1  # small MLPs on vector states: more torch threads only slow them down
    how = (f"local: {parallel} job(s) at once, {threads} thread(s) each ({ncores} cores)"
           if cfg.local else f"SLURM: {ncores} CPU(s) per job, {threads} thread(s)")
    plan = build_plan(cfg, threads, _decider(values, console))
    console.say(f"experiment {cfg.exp_id} on {cfg.env} ({how}); plan:")
    console.say(plan.describe())
    activate = _venv_activate(cfg, project_root)
    if values["dry_run"]:
        if not cfg.local:
            _print_sbatch_scripts(cfg, plan, activate, console)
        console.say("dry run: nothing was started")
        return 0
    if not plan.training_jobs:
        console.say("nothing to run: every job was skipped")
        return 0
    for path in plan.remove:
        console.say(f"removing {path} (overwrite)")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if cfg.local:
        registry = _start_local(cfg, plan, parallel, project_root, console)
    else:
        registry, ok = _submit_slurm(cfg, plan, activate, console)
        if not ok:
            return 1
    console.say(f"status: run_full_cycle.py --status {cfg.exp_id}   stop: kill_experiments.sh "
                f"{cfg.exp_id}   registry: {registry.path}")
    if values["wait"]:
        return monitor.wait(registry, console.out)
    return 0
