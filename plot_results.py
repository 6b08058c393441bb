#!/usr/bin/env python
"""The plots and the timing table of one experiment.

Example: python plot_results.py exp1 --runs_dir out/runs --output_dir plots
Reads every run under --runs_dir whose run.json says exp_id == EXP (see docs/FORMATS.md) and writes
{output_dir}/{EXP}/: online_returns.png, interval_comparison.png, blend_weights.png (BlendRL runs
only), timing.md and timing.csv; prints the timing table. Works on partial results (warnings).
Exit status: 0 written, 1 no run of EXP found (lists the experiments found), 2 bad arguments.
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from blendrl.plotting.report import make_plots


@dataclass
class Args:
    exp_id: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="EXP")]
    """the experiment id (EXP): the runs whose run.json has this exp_id (not a folder-name match)"""
    runs_dir: Path = Path("out/runs")
    """the folder holding one folder per run"""
    output_dir: Path = Path("plots")
    """where the plots go: {output_dir}/{exp_id}/"""
    smooth_window: int = 10
    """online_returns.png: trailing mean over this many training episodes per seed (1 = raw)"""


if __name__ == "__main__":
    args = tyro.cli(Args)
    sys.exit(make_plots(args.exp_id, args.runs_dir, args.output_dir, args.smooth_window))
