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
from typing import Any

from blendrl.contract import EXP_ID_RE, MAX_EXP_ID_LEN
from blendrl.methods import METHOD_TABLE, OFFLINE_METHODS, ONLINE_METHODS
from blendrl.launch import knobs
from blendrl.launch.flags import managed_flags
from blendrl.launch.knob_values import ConfigError, KnobValues, range_problems, without_none
from blendrl.launch.knobs import (OFFLINE, ONLINE, PASS, RESOURCE_PARTS, kind_knob,
                                  shared_knob)
from blendrl.launch.request import LaunchRequest

SCRIPTS: dict[str, str] = {m.id: m.script for m in METHOD_TABLE}
"""Each method's training script (from the contract's method table)."""
_PLOT_SCRIPT = "plot_results.py"


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

JOB_KINDS = (ONLINE, OFFLINE, "plot")
"""The kinds of job, each with its own cluster request."""

_GPUS_RE = re.compile(r"^(?:([A-Za-z0-9._-]+):)?(\d+)$")
_MEM_RE = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.I)


def gpu_count(text: str) -> tuple[str, int] | None:
    """``(type, count)`` of an sbatch ``--gpus`` value ``[type:]count`` (type '' when not
    given); None if it is not one."""
    m = _GPUS_RE.match(text.strip())
    return (m[1] or "", int(m[2])) if m else None


def _no_gpu(text: str) -> bool:
    """'' and a count of 0 (``0``, ``a100:0``) ask for no GPU."""
    parsed = gpu_count(text) if text else None
    return not text or (parsed is not None and parsed[1] == 0)


@dataclass(frozen=True)
class Request:
    """What the jobs of one kind ask SLURM for, and the knob each part comes from: the kind's
    own (``CLUSTER_OFFLINE_GPUS``) or, where that is '', the shared one (``CLUSTER_GPUS``);
    None for what is fixed (the plot job's one CPU and no GPU)."""

    kind: str
    cpus: int
    mem: str
    """'' = the cluster's default"""
    gpus: str
    """'' = none"""
    cpus_from: str | None
    mem_from: str | None
    gpus_from: str | None

    def source(self, part: str) -> str | None:
        return getattr(self, f"{part}_from")

    def asked(self, part: str) -> bool:
        """The request says this part (the CPUs always; memory and GPUs when given)."""
        return part == "cpus" or bool(getattr(self, part))

    def knob_words(self, part: str) -> str | None:
        """The knob to change for ``part``, in words: its own knob (``CLUSTER_OFFLINE_CPUS``), or
        the shared knob it follows and its own (``CLUSTER_CPUS (or CLUSTER_OFFLINE_CPUS for the
        offline jobs alone)``); None if it is fixed."""
        source, own = self.source(part), kind_knob(self.kind, part)
        if source is None or own is None or source == own:
            return source or own
        return f"{source} (or {own} for the {self.jobs} alone)"

    @property
    def jobs(self) -> str:
        """``online jobs``, ``offline jobs``, ``plot job``."""
        return "plot job" if self.kind == "plot" else f"{self.kind} jobs"

    def to_dict(self) -> dict:
        """As recorded with each job in the registry (what a pending reason names)."""
        return {"cpus": self.cpus, "mem": self.mem, "gpus": self.gpus,
                "knobs": {part: self.source(part) for part in RESOURCE_PARTS}}

    @classmethod
    def of_entry(cls, job: dict) -> "Request | None":
        """The request recorded with a registry entry (None: none recorded)."""
        r = job.get("request")
        if not isinstance(r, dict) or not isinstance(r.get("knobs"), dict):
            return None
        return cls(job.get("kind", ""), int(r.get("cpus") or 1), str(r.get("mem") or ""),
                   str(r.get("gpus") or ""), *(r["knobs"].get(p) for p in RESOURCE_PARTS))

    def describe(self) -> str:
        """``4 CPU(s), 16G, 1 GPU`` (as sbatch will be asked)."""
        mem = self.mem or "the cluster's default memory"
        gpus = f"--gpus={self.gpus}" if self.gpus else "no GPU"
        return f"{self.cpus} CPU(s), {mem}, {gpus}"


@dataclass(frozen=True)
class SlurmOptions:
    """The sbatch options of the jobs of a cluster experiment ('' = not given).

    ``cpus``, ``mem`` and ``gpus`` are the shared knobs (CLUSTER_CPUS, ...); each kind of job has
    its own (``online_cpus``: CLUSTER_ONLINE_CPUS, ...), which, when None or '', follows the
    shared one. :meth:`request` resolves them."""

    partition: str = ""
    time: str = ""
    cpus: int = 1
    mem: str = ""
    gpus: str = ""
    account: str = ""
    extra: tuple[str, ...] = ()
    signal_margin: int = 300
    """Seconds before the time limit at which the job is told to checkpoint (0: never)."""
    online_cpus: int | None = None
    online_mem: str = ""
    online_gpus: str = "0"
    """online jobs step environments on CPUs: no GPU unless asked"""
    offline_cpus: int | None = None
    offline_mem: str = ""
    offline_gpus: str = ""
    plot_mem: str = "2G"
    """the plot job: one CPU, no GPU, this memory ('' = ``mem``)"""

    def request(self, kind: str) -> Request:
        """What a ``kind`` job (online, offline, plot) asks for, and the knob of each part."""
        def part(name: str, own: Any) -> tuple[Any, str | None]:
            knob = kind_knob(kind, name)
            if knob is None:
                return None, None
            if own is None or own == "":
                return getattr(self, name), shared_knob(name)
            return own, knob

        if kind == "plot":
            mem, mem_from = part("mem", self.plot_mem)
            return Request(kind, 1, mem, "", None, mem_from, None)
        cpus, cpus_from = part("cpus", getattr(self, f"{kind}_cpus"))
        mem, mem_from = part("mem", getattr(self, f"{kind}_mem"))
        gpus, gpus_from = part("gpus", getattr(self, f"{kind}_gpus"))
        return Request(kind, int(cpus), str(mem), "" if _no_gpu(str(gpus)) else str(gpus),
                       cpus_from, mem_from, gpus_from)

    def unused_gpus(self) -> str | None:
        """A note when CLUSTER_GPUS asks for GPUs but no kind of job follows it."""
        followed = {self.request(kind).gpus_from for kind in JOB_KINDS}
        if _no_gpu(self.gpus) or shared_knob("gpus") in followed:
            return None
        return (f"note: CLUSTER_GPUS={self.gpus} reaches no job: the online and offline jobs ask "
                f"for CLUSTER_ONLINE_GPUS={self.online_gpus or 0} and "
                f"CLUSTER_OFFLINE_GPUS={self.offline_gpus or 0}, the plot job for none")


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
    eval_video: bool = False
    """EVAL_VIDEO: every evaluation's first episode also as an MP4 (--eval_video of the four
    scripts)."""
    offline_start: str = "after"
    """OFFLINE_START: ``after`` (an offline job starts once its online job exited 0) or
    ``follow`` (it starts with its online job, with ``--follow``)."""

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
        return self.scripts_dir / _PLOT_SCRIPT


def validate_exp_id(exp_id: str) -> str | None:
    """None if ``exp_id`` is a safe experiment id, else the problem."""
    if not exp_id:
        return "EXPERIMENT_ID is empty"
    if len(exp_id) > MAX_EXP_ID_LEN or not EXP_ID_RE.match(exp_id):
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


def build_config(request: LaunchRequest, *, project_root: Path, cwd: Path,
                 env_names: tuple[str, ...], python: str) -> LaunchConfig:
    """Validate the knobs and folders of ``request`` and build the configuration. Relative paths
    are taken relative to ``cwd``; ``work_dir``/``scripts_dir`` default to ``project_root``.
    Raises :class:`ConfigError` listing every problem, in this order: what to run, the ranges of
    single knobs, the seeds, the folders, the cluster's time limit and options, the pass-through
    arguments, the cluster's names and resources."""
    problems: list[str] = []
    v = request.knobs
    exp_id, env, online, offline, datasets = _what_to_run(v, env_names, problems)
    problems += range_problems(v)
    seeds = _seeds(tuple(int(s) for s in v.seeds), problems)
    work_dir, scripts_dir, dataset_dir = _folders(request, project_root, cwd, problems)
    margin, time_text = _time_limit(v, problems)
    cluster_extra = _cluster_extra(str(v.cluster_extra), problems)
    extra_args = _pass_through_args(v, problems)
    problems += _name_problems(v)
    problems += _resource_problems(v, cluster_extra)
    if problems:
        raise ConfigError(problems)
    slurm = SlurmOptions(partition=str(v.cluster_partition), time=time_text,
                         cpus=int(v.cluster_cpus), mem=str(v.cluster_mem),
                         gpus=str(v.cluster_gpus), account=str(v.cluster_account),
                         extra=cluster_extra, signal_margin=margin,
                         **{f: getattr(v, f"cluster_{f}") for f in _KIND_FIELDS})
    return LaunchConfig(
        exp_id=exp_id, env=env, online_methods=online, online_steps=int(v.online_steps),
        offline_methods=offline, offline_datasets=datasets,
        offline_epochs=int(v.offline_epochs), intervals=int(v.intervals_count),
        eval_episodes=int(v.eval_episodes), seeds=seeds, local=bool(v.local),
        max_parallel=int(v.max_parallel), work_dir=work_dir, scripts_dir=scripts_dir,
        dataset_dir=dataset_dir, python=python, slurm=slurm, eval_policy=str(v.eval_policy),
        offline_start=str(v.offline_start), eval_video=bool(v.eval_video), **extra_args)


def _what_to_run(v: KnobValues, env_names: tuple[str, ...], problems: list[str]
                 ) -> tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(experiment id, environment, online methods, offline methods, datasets)``; their
    problems are appended to ``problems``."""
    exp_id = str(v.experiment_id)
    if (p := validate_exp_id(exp_id)) is not None:
        problems.append(p)
    env = str(v.environment)
    if env not in env_names:
        problems.append(f"ENVIRONMENT: unknown environment {env!r}; valid: {', '.join(env_names)}")
    online = without_none("ONLINE_METHODS", tuple(v.online_methods), problems)
    offline = without_none("OFFLINE_METHODS", tuple(v.offline_methods), problems)
    datasets = without_none("OFFLINE_DATASETS", tuple(v.offline_datasets), problems)
    _check_methods("ONLINE_METHODS", online, ONLINE_METHODS, problems)
    _check_methods("OFFLINE_METHODS", offline, OFFLINE_METHODS, problems)
    _check_methods("OFFLINE_DATASETS", datasets, ONLINE_METHODS, problems)
    if not online and not offline:
        problems.append("ONLINE_METHODS and OFFLINE_METHODS are both empty (none): nothing to run")
    if offline and not datasets:
        problems.append("OFFLINE_DATASETS is empty: the offline methods need the online data of "
                        f"at least one of {', '.join(ONLINE_METHODS)}")
    return exp_id, env, online, offline, datasets


def _seeds(seeds: tuple[int, ...], problems: list[str]) -> tuple[int, ...]:
    if not seeds:
        problems.append("SEEDS is empty: give at least one seed, e.g. SEEDS=\"0 1 2\"")
    if any(s < 0 for s in seeds):
        problems.append(f"SEEDS must be non-negative, got {' '.join(map(str, seeds))}")
    if len(set(seeds)) != len(seeds):
        problems.append(f"SEEDS lists a seed twice: {' '.join(map(str, seeds))}")
    return seeds


def _folders(request: LaunchRequest, project_root: Path, cwd: Path,
             problems: list[str]) -> tuple[Path, Path, Path]:
    """``(work dir, scripts dir, datasets folder)``, absolute."""
    def path_of(text: str, default: Path) -> Path:
        return default if not text else (cwd / os.path.expanduser(text)).resolve()

    v = request.knobs
    work_dir = path_of(str(request.work_dir), project_root)
    scripts_dir = path_of(str(request.scripts_dir), project_root)
    if not bool(v.use_large_dataset_path):
        return work_dir, scripts_dir, work_dir / "offline_dataset"
    if not str(v.large_dataset_path):
        problems.append("USE_LARGE_DATASET_PATH=1 but LARGE_DATASET_PATH is empty")
    return work_dir, scripts_dir, path_of(str(v.large_dataset_path), work_dir / "offline_dataset")


def _time_limit(v: KnobValues, problems: list[str]) -> tuple[int, str]:
    """``(CLUSTER_SIGNAL_MARGIN, CLUSTER_TIME)``, checked against each other."""
    margin = int(v.cluster_signal_margin)
    if margin < 0 or margin > 65535:
        problems.append(f"CLUSTER_SIGNAL_MARGIN must be 0..65535 seconds, got {margin}")
    time_text = str(v.cluster_time)
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
    return margin, time_text


def _cluster_extra(text: str, problems: list[str]) -> tuple[str, ...]:
    """CLUSTER_EXTRA's sbatch options."""
    words = _split_extra("CLUSTER_EXTRA", text, (), problems)
    for w in words:
        if not w.startswith("-"):
            problems.append(f"CLUSTER_EXTRA: {w!r} is not an sbatch option (write --opt=value)")
    return words


def _pass_through_args(v: KnobValues, problems: list[str]) -> dict[str, tuple[str, ...]]:
    """The words of each pass-through knob (ONLINE_EXTRA_ARGS, ...), by its
    :class:`LaunchConfig` field; none may set a flag its scripts get from the launcher."""
    return {k.config: _split_extra(k.env_var, str(getattr(v, k.field)),
                                   managed_flags(k.scripts[0]), problems)
            for k in knobs.KNOBS if k.section == PASS}


def _name_problems(v: KnobValues) -> list[str]:
    """CLUSTER_PARTITION and CLUSTER_ACCOUNT: characters sbatch takes there."""
    return [f"{name} {text!r} contains characters that are not valid there"
            for name, text in (("CLUSTER_PARTITION", v.cluster_partition),
                               ("CLUSTER_ACCOUNT", v.cluster_account))
            if str(text) and not re.match(r"^[A-Za-z0-9._:,=+-]+$", str(text))]


_KIND_FIELDS = ("online_cpus", "online_mem", "online_gpus", "offline_cpus", "offline_mem",
                "offline_gpus", "plot_mem")
"""The per-kind request fields of :class:`SlurmOptions` (the knob of ``f`` is ``CLUSTER_F``)."""

_EXTRA_RESOURCES = (
    (re.compile(r"^(?:--cpus-per-task(?:=|$)|-c\d*$)"), "cpus", "the CPUs of a job"),
    (re.compile(r"^--mem(?:=|$)"), "mem", "the memory of a job"),
    (re.compile(r"^(?:--gpus(?:-per-\w+)?(?:=|$)|-G\d*$|--gres=.*gpu)"), "gpus",
     "GPUs for every job, the plot job's included"),
)


def _resource_problems(v: KnobValues, cluster_extra: tuple[str, ...]) -> list[str]:
    """The memory and GPU knobs' forms, and CLUSTER_EXTRA options that would ask every job for
    what the per-kind knobs ask each kind for."""
    problems = []
    for kind in JOB_KINDS:
        for part in ("mem", "gpus"):
            knob = kind_knob(kind, part)
            if knob is not None:
                problems += _value_problem(knob, str(getattr(v, knob.lower()) or ""), part)
    for part in ("mem", "gpus"):
        problems += _value_problem(shared_knob(part), str(getattr(v, shared_knob(part).lower())),
                                   part)
    for word in cluster_extra:
        for pattern, part, what in _EXTRA_RESOURCES:
            if pattern.match(word):
                own = [k for k in (kind_knob(kind, part) for kind in JOB_KINDS) if k]
                problems.append(f"CLUSTER_EXTRA: {word} would set {what}; set "
                                f"{' / '.join(own)} (or {shared_knob(part)}) instead")
    return problems


def _value_problem(knob: str, text: str, part: str) -> list[str]:
    if not text:
        return []
    if part == "mem" and not _MEM_RE.match(text):
        return [f"{knob} {text!r} is not an amount of memory: write e.g. 16G, 500M or 16000 (MB)"
                + (", or '' for the cluster's default" if knob == "CLUSTER_MEM" else
                   ", or '' for CLUSTER_MEM")]
    if part == "gpus" and gpu_count(text) is None:
        return [f"{knob} {text!r} is not a number of GPUs: write COUNT or TYPE:COUNT, e.g. 1 or "
                "a100:1 (0 = none)"]
    return []


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
