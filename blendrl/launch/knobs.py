"""The launcher's knobs, each declared once.

A knob is one setting of an experiment that the user edits at the top of ``run_full_cycle.sh``
(``EXPERIMENT_ID``, ``SEEDS``, ...). Its row in :data:`KNOBS` says everything about it: the
variable, its kind and default, the one line that documents it, the section of the shell script
it sits in, the training-script flag it becomes (if any) and whether it changes what the runs
compute. Everything else is derived from the table, when it is used (so a row added to the table
reaches every piece):

* the knob block of ``run_full_cycle.sh`` (:func:`sh_block`; a test checks the script holds it
  verbatim, ``python -m blendrl.launch.knobs`` prints it after a change of the table);
* the values given to the knobs (:mod:`blendrl.launch.knob_values`): parsing the exported
  variables, the knob flags of ``run_full_cycle.py`` with their defaults and ``--help`` (a knob
  ``NAME`` is the flag ``--name``), their typed record, and the checks of each knob on its own
  (set but empty, below its minimum, not one of its choices);
* the flags the plan passes to the training scripts and the flags the pass-through arguments may
  therefore not set again (:mod:`blendrl.launch.flags`);
* the knobs recorded in an experiment's registry, which ``--resume`` may not change
  (:func:`blendrl.launch.resume.recorded_knobs`).

Torch-free, like the rest of the launcher.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from blendrl.methods import OFFLINE_METHODS, ONLINE_METHODS
from blendrl.envs import ENV_NAMES  # the environment packages' names (no torch imported)
from blendrl.cli_parse import parse_bool  # the BOOL kind (also the scripts' flags)

ONLINE, OFFLINE = "online", "offline"
_BOTH = (ONLINE, OFFLINE)


# --------------------------------------------------------------------------- kinds of value

def _parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _parse_words(text: str) -> tuple[str, ...]:
    """A list written with spaces and/or commas: ``"ppo blendrl_ppo"`` or ``"ppo,blendrl_ppo"``."""
    return tuple(w for w in re.split(r"[\s,]+", text.strip()) if w)


def _parse_ints(text: str) -> tuple[int, ...]:
    return tuple(_parse_int(w) for w in _parse_words(text))


def _parse_str(text: str) -> str:
    return text.strip()


def _parse_opt_int(text: str) -> int | None:
    """A whole number, or '' (and ``None``, how the flag writes it) for no value of its own."""
    t = text.strip()
    return None if t in ("", "None") else _parse_int(t)


@dataclass(frozen=True)
class Kind:
    """How a knob's text becomes a value, how its default is written in the shell script, and
    its Python type (the flag's type)."""

    parse: Callable[[str], Any]
    show: Callable[[Any], str]
    type: Any


TEXT = Kind(_parse_str, str, str)
INT = Kind(_parse_int, str, int)
BOOL = Kind(parse_bool, lambda v: "1" if v else "0", bool)
WORDS = Kind(_parse_words, " ".join, tuple[str, ...])
INTS = Kind(_parse_ints, lambda v: " ".join(map(str, v)), tuple[int, ...])
OPT_INT = Kind(_parse_opt_int, lambda v: "" if v is None else str(v), int | None)
"""a whole number, or '' (None): the knob follows another one"""


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Knob:
    """One knob of ``run_full_cycle.sh``."""

    env_var: str
    """the variable in ``run_full_cycle.sh`` (the flag of ``run_full_cycle.py`` is its lower case)"""
    kind: Kind
    default: Any
    """the default, as a value of ``kind``"""
    doc: str
    """one line: the comment beside it in ``run_full_cycle.sh`` and its ``--help``"""
    section: str
    """the heading of the part of ``run_full_cycle.sh`` it sits in"""
    config: str | None = None
    """the :class:`~blendrl.launch.config.LaunchConfig` attribute holding its validated value
    (needed by a knob with a ``flag``, a pass-through knob and a ``recorded`` one)"""
    flag: str | None = None
    """the training scripts' flag it becomes (``--{flag} {value}``; a ``BOOL`` knob: ``--{flag}``
    alone when it is on, nothing when off), for the kinds in ``scripts``"""
    scripts: tuple[str, ...] = ()
    """which training scripts get ``flag`` (a pass-through knob: its words): ``online`` and/or
    ``offline``"""
    per_seed: bool = False
    """the flag gets the job's own seed, not the whole value"""
    recorded: bool = False
    """it changes which runs there are or what they compute: recorded in the experiment's
    registry, and ``--resume`` refuses to change it"""
    minimum: int | None = None
    """the smallest valid value of a whole-number knob"""
    choices: tuple[str, ...] = ()
    """the valid values of a text knob (empty: any)"""
    flag_note: str = ""
    """more for ``--help`` than the shell comment says (how to write it as a flag, its formats)"""
    allow_empty: bool = False
    """'' is a value of its own (its doc says what it means); a knob whose default is '' always
    allows it. Any other knob set to '' is refused"""
    none_ok: bool = False
    """a list that may list nothing, written ``none``"""
    blendrl_only: bool = False
    """a pass-through knob whose words go to the BlendRL methods' scripts only"""

    @property
    def field(self) -> str:
        """The flag of ``run_full_cycle.py`` (and the key of its parsed values)."""
        return self.env_var.lower()

    @property
    def may_be_empty(self) -> bool:
        return self.allow_empty or self.default in ("", None)


EXPERIMENT = "the experiment"
WHERE = "where and how"
SLURM = "SLURM (LOCAL=0)"
PASS = "pass-through training flags"
CONTINUE = "continue a stopped experiment"

EVAL_POLICIES = ("sample", "greedy")
"""EVAL_POLICY values (the training scripts' --eval_policy, blendrl.evaluation.EVAL_POLICIES;
kept here so the launcher stays torch-free; a test checks the two agree)."""

OFFLINE_STARTS = ("after", "follow")
"""OFFLINE_START values: an offline job starts once its online job exited 0 (``after``), or
together with it and follows its dataset (``follow``: the offline scripts' ``--follow``)."""

KNOBS: tuple[Knob, ...] = (
    Knob("EXPERIMENT_ID", TEXT, "default_cartpole",
         "name of the experiment (run ids, logs/EXP/, plots/EXP/): letters, digits, . _ -",
         EXPERIMENT,
         config="exp_id", flag="exp_id", scripts=_BOTH),
    Knob("ENVIRONMENT", TEXT, "cartpole", " | ".join(ENV_NAMES), EXPERIMENT,
         config="env", flag="env", scripts=_BOTH, recorded=True),
    Knob("ONLINE_METHODS", WORDS, ONLINE_METHODS,
         f"online methods ({', '.join(ONLINE_METHODS)}; none: no online run); each saves its "
         "dataset", EXPERIMENT, config="online_methods", recorded=True, none_ok=True),
    Knob("ONLINE_STEPS", INT, 50000, "environment transitions per online run", EXPERIMENT,
         config="online_steps", flag="total_timesteps", scripts=(ONLINE,), recorded=True,
         minimum=1),
    Knob("OFFLINE_METHODS", WORDS, OFFLINE_METHODS,
         f"offline methods ({', '.join(OFFLINE_METHODS)}; none: no offline run)", EXPERIMENT,
         config="offline_methods", recorded=True, none_ok=True),
    Knob("OFFLINE_DATASETS", WORDS, ONLINE_METHODS,
         "whose online data the offline methods train on (none with OFFLINE_METHODS=none)",
         EXPERIMENT, config="offline_datasets", recorded=True, none_ok=True),
    Knob("OFFLINE_EPOCHS", INT, 5, "offline epochs on each interval's dataset prefix", EXPERIMENT,
         config="offline_epochs", flag="epochs", scripts=(OFFLINE,), recorded=True, minimum=1),
    Knob("INTERVALS_COUNT", INT, 5, "evaluation points per run", EXPERIMENT,
         config="intervals", flag="intervals", scripts=_BOTH, recorded=True, minimum=1),
    Knob("EVAL_EPISODES", INT, 10, "episodes per evaluation", EXPERIMENT,
         config="eval_episodes", flag="eval_episodes", scripts=_BOTH, recorded=True, minimum=1),
    Knob("EVAL_POLICY", TEXT, "sample",
         "evaluation actions of every method: sample (from the policy) | greedy", EXPERIMENT,
         config="eval_policy", flag="eval_policy", scripts=_BOTH, recorded=True,
         choices=EVAL_POLICIES),
    Knob("EVAL_VIDEO", BOOL, False,
         "1: each evaluation's first episode also as an MP4 in the run's videos/ (BlendRL: "
         "with the rules that fired)", EXPERIMENT,
         config="eval_video", flag="eval_video", scripts=_BOTH,
         flag_note="the training scripts get --eval_video when it is 1 (results unchanged)"),
    Knob("SEEDS", INTS, (0,), 'one run of every method per seed, e.g. "0 1 2"', EXPERIMENT,
         config="seeds", flag="seed", scripts=_BOTH, per_seed=True, recorded=True),
    Knob("LOCAL", BOOL, True, "1: run on this machine; 0: submit to SLURM", WHERE, config="local",
         flag_note="as a flag: --local / --no-local"),
    Knob("MAX_PARALLEL", INT, 0,
         "local jobs at once (0: one per core; threads = cores / jobs)", WHERE,
         config="max_parallel", minimum=0),
    Knob("OFFLINE_START", TEXT, "after",
         "offline jobs start after (their online job exited 0) | follow (with it: --follow, "
         "each interval once saved)", WHERE,
         config="offline_start", choices=OFFLINE_STARTS),
    Knob("USE_LARGE_DATASET_PATH", BOOL, False,
         "1: keep datasets under LARGE_DATASET_PATH, not offline_dataset/", WHERE),
    Knob("LARGE_DATASET_PATH", TEXT, "",
         "datasets folder for USE_LARGE_DATASET_PATH=1 (e.g. /scratch/$USER/datasets)", WHERE),
    Knob("CLUSTER_PARTITION", TEXT, "", "sbatch --partition ('' = the cluster's default)", SLURM),
    Knob("CLUSTER_TIME", TEXT, "04:00:00",
         "sbatch --time per job ('' = the partition's default); longer jobs checkpoint and "
         "requeue", SLURM, allow_empty=True, flag_note="M, M:S, H:M:S, D-H, D-H:M or D-H:M:S"),
    Knob("CLUSTER_CPUS", INT, 4,
         "sbatch --cpus-per-task (and --threads) of the training jobs whose *_CPUS below is ''",
         SLURM, minimum=1),
    Knob("CLUSTER_MEM", TEXT, "16G",
         "sbatch --mem of the jobs whose *_MEM below is '' ('' = the cluster's default)", SLURM,
         allow_empty=True),
    Knob("CLUSTER_GPUS", TEXT, "",
         "sbatch --gpus of the jobs whose *_GPUS below is '' (the offline ones), e.g. 1 or "
         "a100:1 ('' or 0 = none)", SLURM),
    Knob("CLUSTER_ONLINE_CPUS", OPT_INT, None,
         "online jobs' CPUs (environment stepping) and --threads ('' = CLUSTER_CPUS)", SLURM,
         minimum=1, flag_note="as a flag: a number, or None for CLUSTER_CPUS"),
    Knob("CLUSTER_ONLINE_MEM", TEXT, "", "online jobs' --mem ('' = CLUSTER_MEM)", SLURM),
    Knob("CLUSTER_ONLINE_GPUS", TEXT, "0",
         "online jobs' --gpus (0 = none: they step environments on CPUs; '' = CLUSTER_GPUS)",
         SLURM, allow_empty=True),
    Knob("CLUSTER_OFFLINE_CPUS", OPT_INT, None,
         "offline jobs' CPUs and --threads ('' = CLUSTER_CPUS)", SLURM, minimum=1,
         flag_note="as a flag: a number, or None for CLUSTER_CPUS"),
    Knob("CLUSTER_OFFLINE_MEM", TEXT, "", "offline jobs' --mem ('' = CLUSTER_MEM)", SLURM),
    Knob("CLUSTER_OFFLINE_GPUS", TEXT, "",
         "offline jobs' --gpus, e.g. 1 or a100:1 (0 = none: train on CPUs; '' = CLUSTER_GPUS)",
         SLURM),
    Knob("CLUSTER_PLOT_MEM", TEXT, "2G",
         "the plot job's --mem (it asks for 1 CPU and no GPU; '' = CLUSTER_MEM)", SLURM,
         allow_empty=True),
    Knob("CLUSTER_ACCOUNT", TEXT, "", "sbatch --account ('' = none)", SLURM),
    Knob("CLUSTER_EXTRA", TEXT, "",
         'more sbatch options for every job (not CPUs, memory or GPUs: the knobs above), e.g. '
         '"--qos=short --constraint=avx2"', SLURM,
         flag_note="as a flag write it with '=': --cluster_extra='--qos=short'"),
    Knob("CLUSTER_SIGNAL_MARGIN", INT, 300,
         "seconds before the time limit to checkpoint and requeue (0: never)", SLURM),
    Knob("ONLINE_EXTRA_ARGS", TEXT, "",
         'extra flags for the online scripts, e.g. "--learning_rate 1e-3"', PASS,
         config="online_extra_args", recorded=True, scripts=(ONLINE,),
         flag_note="as a flag write it with '=': --online_extra_args='--learning_rate 1e-3'"),
    Knob("OFFLINE_EXTRA_ARGS", TEXT, "", "extra flags for the offline scripts", PASS,
         config="offline_extra_args", recorded=True, scripts=(OFFLINE,),
         flag_note="as a flag write it with '=': --offline_extra_args='--beta 5'"),
    Knob("BLENDRL_ONLINE_EXTRA_ARGS", TEXT, "",
         'extra flags for the BlendRL online script only, e.g. "--soft_or logsumexp"', PASS,
         config="blendrl_online_extra_args", recorded=True, scripts=(ONLINE,), blendrl_only=True,
         flag_note="as a flag write it with '='"),
    Knob("BLENDRL_OFFLINE_EXTRA_ARGS", TEXT, "",
         'extra flags for the BlendRL offline script only, e.g. "--offline_blend_ent_coef 0.01"',
         PASS, config="blendrl_offline_extra_args", recorded=True, scripts=(OFFLINE,),
         blendrl_only=True, flag_note="as a flag write it with '='"),
    Knob("RESUME", BOOL, False,
         "1 (or --resume): keep the done jobs, continue the others from their checkpoints",
         CONTINUE, flag_note="continues the experiment in its registry with the knobs it was "
         "started with; a job without a checkpoint starts afresh, one never started starts"),
)

KNOB_BY_VAR: dict[str, Knob] = {k.env_var: k for k in KNOBS}

RESOURCE_PARTS = ("cpus", "mem", "gpus")
"""What a cluster job asks for, each set by a knob: CLUSTER_{KIND}_{PART} or else CLUSTER_{PART}."""


def kind_knob(kind: str, part: str) -> str | None:
    """The knob of the ``part`` (cpus, mem, gpus) of a ``kind`` job's cluster request:
    ``CLUSTER_ONLINE_CPUS``, ``CLUSTER_PLOT_MEM``, ...; None where it has none (the plot job's
    one CPU and no GPU are fixed)."""
    name = f"CLUSTER_{kind.upper()}_{part.upper()}"
    return name if name in KNOB_BY_VAR else None


def shared_knob(part: str) -> str:
    """The knob a ``part`` of every kind's request follows where its own is '' (CLUSTER_CPUS,
    ...)."""
    return f"CLUSTER_{part.upper()}"


_COMMENT_COLUMN = 45


def sh_block() -> str:
    """The knob part of ``run_full_cycle.sh``: a heading per section, one
    ``: "${NAME=default}"  # doc`` line per knob (the default only where the knob is not set: a
    knob set empty stays empty, and is refused unless '' means something for it), and the
    ``export`` of them all."""
    lines: list[str] = []
    section = None
    for k in KNOBS:
        if k.section != section:
            if section is not None:
                lines.append("")
            section = k.section
            lines.append(f"# {'-' * 64} {section}")
        assign = f': "${{{k.env_var}={k.kind.show(k.default)}}}"'
        lines.append(f"{assign.ljust(_COMMENT_COLUMN - 1)} # {k.doc}")
    lines.append("")
    names = [k.env_var for k in KNOBS]
    export, line = [], "export"
    for name in names:
        if len(line) + 1 + len(name) > 96:
            export.append(line + " \\")
            line = "   "
        line += " " + name
    export.append(line)
    return "\n".join(lines + export) + "\n"


if __name__ == "__main__":
    print(sh_block(), end="")
