#!/usr/bin/env python
"""The plots, interval estimates, report and timing table of one experiment.

Example: python plot_results.py exp1 --runs_dir out/runs --output_dir plots
Reads every run under --runs_dir whose run.json says exp_id == EXP (see docs/FORMATS.md) and writes
{output_dir}/{EXP}/: online_returns.png, interval_comparison.png, paired_differences.png,
blend_weights.png (BlendRL runs only), summary.csv (estimate and bootstrap CI per method and mark),
paired_differences.csv (offline - online per mark, paired bootstrap CI), report.md (one page:
knobs, figures, readings, tables, what is missing, timing), timing.md and timing.csv; prints the
timing table and one reading per offline-vs-online pair. Works on partial results (estimates over
what is there; the report lists what is missing, run by run with why: no run, a truncated or
invalid results.json, fewer evaluations than planned, a partial dataset). The planned runs come
from the launcher's registry ({runs_dir}/../../logs/EXP/registry.json, or --registry) when there
is one; otherwise they are inferred from the runs found.
Exit status: 0 written, 1 no run of EXP found (lists the experiments found), 2 bad arguments, 74 a
write failed (disk full, read-only or unwritable output folder: one line naming the path).
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro

from blendrl.cli_parse import cli
from blendrl.exits import guarded_main
from blendrl.plotting.report import make_plots
from blendrl.plotting.stats import BootstrapSettings


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
    bootstrap_reps: int = BootstrapSettings.reps
    """bootstrap resamples per confidence interval (at least 100)"""
    bootstrap_seed: int = BootstrapSettings.seed
    """seed of the bootstrap resampling: the same seed and runs give the same intervals"""
    confidence: float = BootstrapSettings.confidence
    """coverage of the confidence intervals, in [0.5, 1)"""
    registry: Optional[Path] = None
    """the launcher's registry.json naming the planned runs (default: {runs_dir}/../../logs/EXP/
    registry.json when it exists; without one the plan is inferred from the runs found)"""


if __name__ == "__main__":
    args = cli(Args)
    # a full disk or an unwritable plots folder: one line, exit 74 (blendrl.exits)
    sys.exit(guarded_main(lambda: make_plots(
        args.exp_id, args.runs_dir, args.output_dir, args.smooth_window,
        bootstrap_reps=args.bootstrap_reps, bootstrap_seed=args.bootstrap_seed,
        confidence=args.confidence, registry=args.registry)))
