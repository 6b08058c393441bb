"""Everything ``plot_results.py EXP`` does: check the arguments, collect the runs of EXP, compute
the interval estimates, write ``{output_dir}/{EXP}/`` (the PNGs, ``summary.csv``,
``paired_differences.csv``, ``report.md``, ``timing.md``, ``timing.csv``) and print the timing
table and the readings.

Exit status: 0 written (possibly with warnings about partial runs); 1 no run of EXP found (the
message lists the experiments that were found); 2 bad arguments (nothing read or written).
A broken run (a truncated or invalid file) never stops it: it is warned about and listed under
"What is missing" in ``report.md`` with why, as is every planned run (from the launcher's registry
when there is one, :mod:`blendrl.plotting.planned`) that left no run behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, TextIO

from matplotlib.figure import Figure

from blendrl.contract import EXP_ID_RE as SAFE_ID, MAX_EXP_ID_LEN
from blendrl.plotting.collect import Collection, RunRecord, collect_runs
from blendrl.plotting.figures import (plot_blend_weights, plot_interval_comparison,
                                      plot_online_returns, plot_paired_differences, save_figure)
from blendrl.plotting.markdown import reading, report_markdown
from blendrl.plotting.planned import (AbsentRun, absent_runs, default_registry_path,
                                      read_planned_runs)
from blendrl.plotting.stats import BootstrapSettings
from blendrl.plotting.summary import ExperimentSummary, summarize
from blendrl.plotting.tables import differences_csv, summary_csv
from blendrl.plotting.timing import run_timings, timing_csv, timing_markdown
from blendrl.file_io import atomic_write_bytes

EXIT_OK = 0
EXIT_NO_RUNS = 1
EXIT_USAGE = 2


class PlotUsageError(ValueError):
    """Bad arguments of ``plot_results.py``; ``problems`` lists each one."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_arguments(exp_id: str, runs_dir: Path, output_dir: Path, smooth_window: int,
                    bootstrap_reps: int = BootstrapSettings.reps,
                    bootstrap_seed: int = BootstrapSettings.seed,
                    confidence: float = BootstrapSettings.confidence) -> BootstrapSettings:
    """The bootstrap settings; raise :class:`PlotUsageError` naming every bad argument."""
    problems = []
    if not exp_id or len(exp_id) > MAX_EXP_ID_LEN or not SAFE_ID.match(exp_id):
        problems.append(f"experiment id {exp_id!r} is not valid: use 1-{MAX_EXP_ID_LEN} letters, "
                        "digits, '.', '_' or '-', starting with a letter or digit")
    if not runs_dir.is_dir():
        problems.append(f"--runs_dir {runs_dir} is not an existing folder")
    if output_dir.exists() and not output_dir.is_dir():
        problems.append(f"--output_dir {output_dir} exists and is not a folder")
    else:
        base = _nearest_existing(output_dir)
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            problems.append(f"--output_dir {output_dir} cannot be created or written ({base} is "
                            "not a writable folder)")
    if smooth_window < 1:
        problems.append(f"--smooth_window must be at least 1 (episodes), got {smooth_window}")
    if bootstrap_reps < 100:
        problems.append(f"--bootstrap_reps must be at least 100, got {bootstrap_reps}")
    if bootstrap_seed < 0:
        problems.append(f"--bootstrap_seed must be at least 0, got {bootstrap_seed}")
    if not 0.5 <= confidence < 1.0:
        problems.append(f"--confidence must be in [0.5, 1), got {confidence}")
    if problems:
        raise PlotUsageError(problems)
    return BootstrapSettings(reps=bootstrap_reps, seed=bootstrap_seed, confidence=confidence)


FigureMaker = Callable[[list[RunRecord]], "Figure | None"]


def figure_plan(exp_id: str, smooth_window: int,
                summary: ExperimentSummary) -> list[tuple[str, FigureMaker, str]]:
    """Each PNG: its file name, how to draw it, and why it is skipped when there is nothing to draw."""
    st = summary.settings
    return [
        ("online_returns.png", lambda runs: plot_online_returns(runs, exp_id, smooth_window, st),
         "no online run has a finished training episode in its training_log.pkl yet"),
        ("interval_comparison.png",
         lambda runs: plot_interval_comparison(runs, exp_id, summary, st),
         "no run has an evaluation in its results.json yet"),
        ("paired_differences.png", lambda runs: plot_paired_differences(runs, exp_id, summary, st),
         "no offline run has an evaluation at a mark where its online run evaluated"),
        ("blend_weights.png", lambda runs: plot_blend_weights(runs, exp_id, st),
         "no BlendRL run with logic weights"),
    ]


def no_runs_message(col: Collection) -> str:
    found = sorted(col.found_exp_ids)
    listing = ("experiments found there: " + ", ".join(found)) if found else "no run was found there at all"
    return f"no run of experiment {col.exp_id!r} under {col.runs_dir} ({listing})"


def find_absent(col: Collection, registry: Path | None) -> tuple[list[AbsentRun] | None, Path | None]:
    """The planned runs without a run, from ``registry`` (default: where the launcher keeps it
    beside ``col.runs_dir``), and the registry read; ``(None, None)`` without a usable one."""
    path = registry if registry is not None else default_registry_path(col.runs_dir, col.exp_id)
    if registry is not None and not path.is_file():
        col.warnings.append(f"--registry {path} does not exist; the planned runs are inferred "
                            "from the runs found")
    planned = read_planned_runs(path, col.exp_id, col.warnings)
    return (None, None) if planned is None else (absent_runs(planned, col), path)


def unreadable_lines(col: Collection, absent: list[AbsentRun] | None) -> list[str]:
    """A line per folder whose ``run.json`` is unusable (not already a planned run's line)."""
    named = {a.planned.run_id for a in absent or ()}
    return [f"folder {name}: {why}; if it is a run of {col.exp_id}, none of its results are counted"
            for name, why in sorted(col.unreadable.items()) if name not in named]


def draw_figures(exp_id: str, smooth_window: int, summary: ExperimentSummary,
                 runs: list[RunRecord], target: Path, err: TextIO) -> tuple[list[Path], list[str]]:
    """Write each PNG of :func:`figure_plan` (removing a stale one it skips): the files written
    and, per skipped one, why. A figure that fails to draw is skipped with its error."""
    written, skipped = [], []
    for name, make, reason in figure_plan(exp_id, smooth_window, summary):
        path = target / name
        try:
            fig = make(runs)
        except Exception as e:  # a surprise in one figure must not lose the report
            print(f"error: {name} could not be drawn ({type(e).__name__}: {e})", file=err)
            fig, reason = None, f"drawing failed ({type(e).__name__}: {e})"
        if fig is None:
            if path.exists():
                path.unlink()
                reason += f" (removed the stale {name})"
            skipped.append(f"{path}: {reason}")
            continue
        save_figure(fig, path)
        written.append(path)
    return written, skipped


def make_plots(exp_id: str, runs_dir: Path, output_dir: Path, smooth_window: int,
               out: TextIO | None = None, err: TextIO | None = None, *,
               bootstrap_reps: int = BootstrapSettings.reps,
               bootstrap_seed: int = BootstrapSettings.seed,
               confidence: float = BootstrapSettings.confidence,
               registry: Path | None = None) -> int:
    """Write the plots, tables and report of ``exp_id``; returns the exit status (module docstring).

    ``out`` receives the timing table, the readings and the list of written files, ``err`` the
    warnings and errors (default: the process's stdout and stderr). ``registry``: the launcher's
    ``registry.json`` naming the planned runs (default: ``{runs_dir}/../../logs/{exp_id}/``, used
    when it exists)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    runs_dir, output_dir = Path(runs_dir), Path(output_dir)
    try:
        settings = check_arguments(exp_id, runs_dir, output_dir, smooth_window, bootstrap_reps,
                                   bootstrap_seed, confidence)
    except PlotUsageError as e:
        for p in e.problems:
            print(f"error: {p}", file=err)
        return EXIT_USAGE

    col = collect_runs(runs_dir, exp_id)
    absent, registry_read = find_absent(col, None if registry is None else Path(registry))
    for w in col.warnings:
        print(f"warning: {w}", file=err)
    if not col.runs:
        print(f"error: {no_runs_message(col)}", file=err)
        return EXIT_NO_RUNS

    target = output_dir / exp_id
    target.mkdir(parents=True, exist_ok=True)
    summary = summarize(col.runs, settings, absent)
    summary.missing += unreadable_lines(col, absent)
    written, skipped = draw_figures(exp_id, smooth_window, summary, col.runs, target, err)

    timings = run_timings(col.runs)
    markdown = timing_markdown(exp_id, timings)
    atomic_write_bytes(target / "timing.md", markdown.encode())
    atomic_write_bytes(target / "timing.csv", timing_csv(timings).encode())
    atomic_write_bytes(target / "summary.csv", summary_csv(summary).encode())
    atomic_write_bytes(target / "paired_differences.csv", differences_csv(summary).encode())
    figures = [p.name for p in written]
    atomic_write_bytes(target / "report.md",
                       report_markdown(exp_id, col.runs, summary, figures,
                                       None if registry_read is None else str(registry_read),
                                       report_dir=target).encode())
    written += [target / name for name in ("timing.md", "timing.csv", "summary.csv",
                                           "paired_differences.csv", "report.md")]

    print_outcome(out, markdown, summary, col, written, skipped)
    return EXIT_OK


def print_outcome(out: TextIO, timing_md: str, summary: ExperimentSummary, col: Collection,
                  written: list[Path], skipped: list[str]) -> None:
    """What :func:`make_plots` prints: the timing table, the readings, what is missing, the
    number of runs, the files written and the figures skipped."""
    print(timing_md, file=out)
    for p in summary.pairs:
        print(reading(p, summary.settings.percent), file=out)
    for line in summary.missing:
        print(f"missing: {line}", file=out)
    n_online = sum(r.kind == "online" for r in col.runs)
    print(f"{len(col.runs)} runs of {col.exp_id} ({n_online} online, {len(col.runs) - n_online} "
          f"offline) under {col.runs_dir}", file=out)
    for p in written:
        print(f"wrote {p}", file=out)
    for s in skipped:
        print(f"skipped {s}", file=out)
