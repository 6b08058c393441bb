"""The validated configuration of an experiment.

``run_full_cycle.sh`` exports one environment variable per knob (``EXPERIMENT_ID``, ``SEEDS``,
...; the table of knobs is :mod:`blendrl.launch.knobs`); their parsed values become the
defaults of ``run_full_cycle.py``'s flags, so a flag given on the command line wins.
:func:`build_config` checks everything at once and returns a :class:`LaunchConfig`, or raises
:class:`ConfigError` listing every problem together with the valid values.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from blendrl.contract import (EXP_ID_RE, MAX_EXP_ID_LEN, METHOD_TABLE, OFFLINE_METHODS,  # noqa: F401
                              ONLINE_METHODS)
from blendrl.launch.knobs import (OFFLINE, ONLINE, ConfigError, managed_flags,  # noqa: F401
                                  range_problems, without_none)

SCRIPTS: dict[str, str] = {m.id: m.script for m in METHOD_TABLE}
"""Each method's training script (from the contract's method table)."""
PLOT_SCRIPT = "plot_results.py"

SAFE_ID = EXP_ID_RE

MANAGED_ONLINE_FLAGS = managed_flags(ONLINE)
"""Flags the launcher sets itself on an online script: pass-through arguments may not set them."""
MANAGED_OFFLINE_FLAGS = managed_flags(OFFLINE)
"""The same for an offline script."""


# --------------------------------------------------------------------------- SLURM time limits

_TIME_FORMATS = (
    (re.compile(r"^(\d+)$"), lambda m: int(m[1]) * 60),
    (re.compile(r"^(\d+):(\d+)$"), lambda m: int(m[1]) * 60 + int(m[2])),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), lambda m: int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])),
    (re.compile(r"^(\d+)-(\d+)$"), lambda m: int(m[1]) * 86400 + int(m[2]) * 3600),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"),
     lambda m: int(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"),
     lambda m: int(m[1]) * 86400 + int(m[2]) * 3600 + int(m[3]) * 60 + int(m[4])),
)


def slurm_time_seconds(text: str) -> int:
    """Seconds of a SLURM ``--time`` value: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``. Raises ValueError otherwise."""
    for pattern, seconds in _TIME_FORMATS:
        m = pattern.match(text.strip())
        if m:
            return seconds(m)
    raise ValueError(f"invalid time {text!r}: use minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S")


# --------------------------------------------------------------------------- the configuration

@dataclass(frozen=True)
class SlurmOptions:
    """The sbatch options of every job of a cluster experiment ('' = not given)."""

    partition: str = ""
    time: str = ""
    cpus: int = 1
    mem: str = ""
    gpus: str = ""
    account: str = ""
    extra: tuple[str, ...] = ()
    signal_margin: int = 300
    """Seconds before the time limit at which the job is told to checkpoint (0: never)."""


@dataclass(frozen=True)
class LaunchConfig:
    """A validated experiment: what to run, where the files go, how to run it."""

    exp_id: str
    env: str
    online_methods: tuple[str, ...]
    online_steps: int
    offline_methods: tuple[str, ...]
    offline_datasets: tuple[str, ...]
    offline_epochs: int
    intervals: int
    eval_episodes: int
    seeds: tuple[int, ...]
    local: bool
    max_parallel: int
    """0: as many jobs at once as the machine has cores."""
    work_dir: Path
    """Where ``out/runs``, ``offline_dataset``, ``logs`` and ``plots`` live; the jobs' cwd."""
    scripts_dir: Path
    """Where ``train_*.py`` and ``plot_results.py`` are."""
    dataset_dir: Path
    python: str
    """The interpreter that runs the jobs."""
    slurm: SlurmOptions
    online_extra_args: tuple[str, ...] = ()
    offline_extra_args: tuple[str, ...] = ()
    blendrl_online_extra_args: tuple[str, ...] = ()
    """Extra flags for the BlendRL online script only (after ``online_extra_args``)."""
    blendrl_offline_extra_args: tuple[str, ...] = ()
    """Extra flags for the BlendRL offline script only (after ``offline_extra_args``)."""
    eval_policy: str = "sample"
    """How every method's evaluation selects actions (--eval_policy of the four scripts)."""

    @property
    def runs_dir(self) -> Path:
        return self.work_dir / "out" / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def exp_logs_dir(self) -> Path:
        return self.logs_dir / self.exp_id

    @property
    def plots_dir(self) -> Path:
        return self.work_dir / "plots"

    def script(self, method: str) -> Path:
        return self.scripts_dir / SCRIPTS[method]

    @property
    def plot_script(self) -> Path:
        return self.scripts_dir / PLOT_SCRIPT


def validate_exp_id(exp_id: str) -> str | None:
    """None if ``exp_id`` is a safe experiment id, else the problem."""
    if not exp_id:
        return "EXPERIMENT_ID is empty"
    if len(exp_id) > MAX_EXP_ID_LEN or not SAFE_ID.match(exp_id):
        return (f"EXPERIMENT_ID {exp_id!r} is not safe in paths and shells: use 1-{MAX_EXP_ID_LEN} "
                "letters, digits, '.', '_' or '-', starting with a letter or digit")
    return None


def _check_methods(name: str, given: tuple[str, ...], valid: tuple[str, ...],
                   problems: list[str]) -> None:
    for m in given:
        if m not in valid:
            problems.append(f"{name}: unknown method {m!r}; valid: {', '.join(valid)}")
    if len(set(given)) != len(given):
        problems.append(f"{name}: a method is listed twice ({' '.join(given)})")


def _split_extra(name: str, text: str, managed: tuple[str, ...], problems: list[str]) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(text))
    except ValueError as e:
        problems.append(f"{name}: cannot split {text!r} into arguments ({e})")
        return ()
    for w in words:
        flag = w.split("=", 1)[0]
        field = flag[2:].replace("-", "_")
        if field.startswith("no_") and field[3:] in managed:  # tyro's negation (--no-resume)
            field = field[3:]
        if flag.startswith("--") and field in managed:
            problems.append(f"{name}: {flag} is set by the launcher itself; the managed flags are "
                            + ", ".join("--" + f for f in managed))
    return words


def build_config(values: Mapping[str, Any], *, project_root: Path, cwd: Path,
                 env_names: tuple[str, ...], python: str) -> LaunchConfig:
    """Validate the flag values (field names of ``run_full_cycle.py``'s ``Args``) and build the
    configuration. Relative paths are taken relative to ``cwd``; ``work_dir``/``scripts_dir``
    default to ``project_root``. Raises :class:`ConfigError` listing every problem."""
    problems: list[str] = []
    v = dict(values)
    exp_id = str(v["experiment_id"])
    if (p := validate_exp_id(exp_id)) is not None:
        problems.append(p)
    env = str(v["environment"])
    if env not in env_names:
        problems.append(f"ENVIRONMENT: unknown environment {env!r}; valid: {', '.join(env_names)}")
    online = without_none("ONLINE_METHODS", tuple(v["online_methods"]), problems)
    offline = without_none("OFFLINE_METHODS", tuple(v["offline_methods"]), problems)
    datasets = without_none("OFFLINE_DATASETS", tuple(v["offline_datasets"]), problems)
    _check_methods("ONLINE_METHODS", online, ONLINE_METHODS, problems)
    _check_methods("OFFLINE_METHODS", offline, OFFLINE_METHODS, problems)
    _check_methods("OFFLINE_DATASETS", datasets, ONLINE_METHODS, problems)
    if not online and not offline:
        problems.append("ONLINE_METHODS and OFFLINE_METHODS are both empty (none): nothing to run")
    if offline and not datasets:
        problems.append("OFFLINE_DATASETS is empty: the offline methods need the online data of "
                        f"at least one of {', '.join(ONLINE_METHODS)}")
    problems += range_problems(v)
    eval_policy = str(v.get("eval_policy", "sample"))
    seeds = tuple(int(s) for s in v["seeds"])
    if not seeds:
        problems.append("SEEDS is empty: give at least one seed, e.g. SEEDS=\"0 1 2\"")
    if any(s < 0 for s in seeds):
        problems.append(f"SEEDS must be non-negative, got {' '.join(map(str, seeds))}")
    if len(set(seeds)) != len(seeds):
        problems.append(f"SEEDS lists a seed twice: {' '.join(map(str, seeds))}")

    def path_of(text: str, default: Path) -> Path:
        return default if not text else (cwd / os.path.expanduser(text)).resolve()

    work_dir = path_of(str(v.get("work_dir", "")), project_root)
    scripts_dir = path_of(str(v.get("scripts_dir", "")), project_root)
    if bool(v["use_large_dataset_path"]):
        if not str(v["large_dataset_path"]):
            problems.append("USE_LARGE_DATASET_PATH=1 but LARGE_DATASET_PATH is empty")
        dataset_dir = path_of(str(v["large_dataset_path"]), work_dir / "offline_dataset")
    else:
        dataset_dir = work_dir / "offline_dataset"

    margin = int(v["cluster_signal_margin"])
    if margin < 0 or margin > 65535:
        problems.append(f"CLUSTER_SIGNAL_MARGIN must be 0..65535 seconds, got {margin}")
    time_text = str(v["cluster_time"])
    if time_text:
        try:
            limit = slurm_time_seconds(time_text)
            if limit <= 0:
                problems.append(f"CLUSTER_TIME {time_text!r} is not a positive time limit")
            elif margin >= limit:
                problems.append(f"CLUSTER_SIGNAL_MARGIN {margin} s is not shorter than "
                                f"CLUSTER_TIME {time_text} ({limit} s)")
        except ValueError as e:
            problems.append(f"CLUSTER_TIME: {e}")
    cluster_extra = _split_extra("CLUSTER_EXTRA", str(v["cluster_extra"]), (), problems)
    for w in cluster_extra:
        if not w.startswith("-"):
            problems.append(f"CLUSTER_EXTRA: {w!r} is not an sbatch option (write --opt=value)")
    online_extra = _split_extra("ONLINE_EXTRA_ARGS", str(v["online_extra_args"]),
                                MANAGED_ONLINE_FLAGS, problems)
    offline_extra = _split_extra("OFFLINE_EXTRA_ARGS", str(v["offline_extra_args"]),
                                 MANAGED_OFFLINE_FLAGS, problems)
    blend_online_extra = _split_extra("BLENDRL_ONLINE_EXTRA_ARGS",
                                      str(v.get("blendrl_online_extra_args", "")),
                                      MANAGED_ONLINE_FLAGS, problems)
    blend_offline_extra = _split_extra("BLENDRL_OFFLINE_EXTRA_ARGS",
                                       str(v.get("blendrl_offline_extra_args", "")),
                                       MANAGED_OFFLINE_FLAGS, problems)
    for name, text in (("CLUSTER_PARTITION", v["cluster_partition"]),
                       ("CLUSTER_MEM", v["cluster_mem"]), ("CLUSTER_GPUS", v["cluster_gpus"]),
                       ("CLUSTER_ACCOUNT", v["cluster_account"])):
        if str(text) and not re.match(r"^[A-Za-z0-9._:,=+-]+$", str(text)):
            problems.append(f"{name} {text!r} contains characters that are not valid there")
    if problems:
        raise ConfigError(problems)
    return LaunchConfig(
        exp_id=exp_id, env=env, online_methods=online, online_steps=int(v["online_steps"]),
        offline_methods=offline, offline_datasets=datasets,
        offline_epochs=int(v["offline_epochs"]), intervals=int(v["intervals_count"]),
        eval_episodes=int(v["eval_episodes"]), seeds=seeds, local=bool(v["local"]),
        max_parallel=int(v["max_parallel"]), work_dir=work_dir, scripts_dir=scripts_dir,
        dataset_dir=dataset_dir, python=python,
        slurm=SlurmOptions(partition=str(v["cluster_partition"]), time=time_text,
                           cpus=int(v["cluster_cpus"]), mem=str(v["cluster_mem"]),
                           gpus=str(v["cluster_gpus"]), account=str(v["cluster_account"]),
                           extra=cluster_extra, signal_margin=margin),
        online_extra_args=online_extra, offline_extra_args=offline_extra, eval_policy=eval_policy,
        blendrl_online_extra_args=blend_online_extra, blendrl_offline_extra_args=blend_offline_extra,
    )


def local_parallelism(cores: int, max_parallel: int) -> tuple[int, int, str | None]:
    """``(jobs at once, threads per job, note)`` for local mode: jobs x threads never exceed
    ``cores``. ``max_parallel`` 0 means one job per core; more than the cores is reduced to
    the cores (the note says so)."""
    cores = max(1, cores)
    note = None
    parallel = cores if max_parallel == 0 else max_parallel
    if parallel > cores:
        note = (f"MAX_PARALLEL={max_parallel} exceeds the {cores} cores of this machine: "
                f"running {cores} jobs at once")
        parallel = cores
    return parallel, max(1, cores // parallel), note
