#!/usr/bin/env python
"""Run the whole online-vs-offline comparison of one experiment, locally or on SLURM.

Usually called by ``run_full_cycle.sh``, whose knobs (environment variables such as
``EXPERIMENT_ID`` or ``SEEDS``) become the defaults of the flags below; a flag given here wins.

Examples:
  python run_full_cycle.py --dry_run                   # print the plan, start nothing
  python run_full_cycle.py                             # run it (on a terminal: follow it to the end)
  python run_full_cycle.py --detach                    # run it and return at once
  python run_full_cycle.py --resume                    # continue a stopped experiment (same knobs)
  python run_full_cycle.py --status default_cartpole   # each job's state
Exit status: 0 started (when following: every job done), 1 a job or a submission failed,
2 bad input (nothing started), 130 Ctrl-C while following (the experiment goes on).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from blendrl.exits import guarded_main
from blendrl.cli_parse import cli as parse_cli
from blendrl.envs import CLASSIC_ENVS, ENV_NAMES
from blendrl.launch import cli
from blendrl.launch.knob_values import ConfigError, knob_fields, knobs_from_env
from blendrl.launch.request import LaunchRequest


KnobArgs = dataclasses.make_dataclass("KnobArgs", knob_fields())
"""One flag per knob of run_full_cycle.sh (``NAME`` -> ``--name``), with its default and help,
from the knob table (blendrl/launch/knobs.py, blendrl/launch/knob_values.py)."""


@dataclass
class Args(KnobArgs):
    """Run every online and offline job of an experiment in the right order, then plot.
    Defaults come from the environment variables of run_full_cycle.sh (same names, upper case)."""

    work_dir: str = ""
    """folder for out/runs, offline_dataset, logs and plots ('' = this project's folder)"""
    scripts_dir: str = ""
    """folder of train_*.py and plot_results.py ('' = this project's folder)"""
    dry_run: bool = False
    """print the plan (cluster mode: the sbatch scripts too) and start nothing"""
    status: str | None = None
    """print the state of each job of experiment STATUS and exit (with --wait: wait for it)"""
    wait: bool = False
    """block until the experiment ends, showing progress, then print a summary (what a local
    experiment started on a terminal does anyway; with --status EXP: follow that experiment)"""
    detach: bool = False
    """return once the experiment is started, instead of following it on a terminal"""
    overwrite: bool = False
    """replace runs that already exist (an online run together with its dataset)"""
    skip_existing: bool = False
    """skip jobs whose runs already exist (without asking)"""


def main() -> int:
    try:
        env_values = knobs_from_env(os.environ)
    except ConfigError as e:
        return cli.refuse(cli.Console(), e.problems)
    args = parse_cli(Args, default=dataclasses.replace(Args(), **env_values))
    request = LaunchRequest.of(args)
    root = Path(__file__).resolve().parent
    # a full disk or an unwritable logs folder: one line naming the path, exit 74
    return guarded_main(lambda: cli.main(request, project_root=root, cwd=Path.cwd(),
                                         python=sys.executable, env_names=ENV_NAMES,
                                         vector_envs=CLASSIC_ENVS))


if __name__ == "__main__":
    sys.exit(main())
