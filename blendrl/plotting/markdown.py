"""``report.md``: one page a researcher can paste into notes -- the experiment's knobs, the
figures, a one-line reading per offline-vs-online pair, the estimates with their CIs, what is
missing, the evaluation videos of each run (``--eval_video``, relative links), the timing summary
and how the intervals were computed."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

from blendrl.plotting.collect import RunRecord
from blendrl.plotting.series import group_series
from blendrl.plotting.summary import (CI_OVER_EPISODES, MIN_EPISODES_FOR_VERDICT,
                                      TOO_FEW_EPISODES, ExperimentSummary, MarkDifference,
                                      PairSummary)
from blendrl.video import VIDEO_DIR
from blendrl.plotting.timing import TIMING_NOTE, markdown_table, run_timings, timing_summary_table

KNOBS = ("total_timesteps", "num_envs", "num_steps", "intervals", "eval_episodes", "epochs",
         "batch_size", "learning_rate", "rules", "actor_mode", "blender_mode")
"""The ``run.json`` args shown in the knobs table (those a run recorded)."""


def _num(x: float) -> str:
    return "–" if math.isnan(x) else f"{x:.1f}"


def _ci(low: float, high: float) -> str:
    return "no CI" if math.isnan(low) or math.isnan(high) else f"[{low:.1f}, {high:.1f}]"


INCOMPLETE_NOTE = "incomplete: see What is missing"
NOTHING_MISSING = ("Nothing: every seed of every series evaluated at every mark, and every offline "
                   "run is paired.")


def _range(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _seeds_text(counts: Sequence[int], complete: bool = True) -> str:
    """How many seeds entered the differences; "at every mark" only for a complete pair."""
    if not counts:
        return "no seed"
    every = "at every mark" if complete else "at every mark compared"
    lo, hi = min(counts), max(counts)
    if lo == hi:
        return f"{lo} seed{'s' if lo != 1 else ''} {every}"
    return f"{lo}-{hi} seeds depending on the mark"


TOO_FEW_TEXT = "too few episodes for a verdict"


def _too_few_numbers(marks: Sequence[MarkDifference]) -> str:
    """``(1 seed, 2 episodes; at least 10 needed)``: what a "too few episodes" rests on."""
    episodes = [d.episodes for d in marks]
    return (f"(1 seed, {_range(episodes)} episode{'' if max(episodes) == 1 else 's'}; at least "
            f"{MIN_EPISODES_FOR_VERDICT} needed)")


def verdict_text(d: MarkDifference) -> str:
    """The verdict of one mark in words (the numbers behind a "too few episodes")."""
    return f"{TOO_FEW_TEXT} {_too_few_numbers([d])}" if d.verdict == TOO_FEW_EPISODES else d.verdict


def reading(pair: PairSummary, percent: str) -> str:
    """``IQL on PPO data vs PPO (online): above at 3 of 5 marks (95% CI excludes 0), below at 0,
    inconclusive at 2; 3 seeds at every mark``."""
    verdicts = [d.verdict for d in pair.marks]
    n = len(verdicts)
    text = (f"{pair.offline.label} vs {pair.online_label}: above at {verdicts.count('above')} of "
            f"{n} mark{'s' if n != 1 else ''} ({percent} CI excludes 0), below at "
            f"{verdicts.count('below')}, inconclusive at {verdicts.count('inconclusive')}")
    if verdicts.count("no CI"):
        text += f", no CI at {verdicts.count('no CI')}"
    few = [d for d in pair.marks if d.verdict == TOO_FEW_EPISODES]
    if few:
        text += f", {TOO_FEW_TEXT} at {len(few)} {_too_few_numbers(few)}"
    counts = [len(d.seeds) for d in pair.marks]
    text += f"; {_seeds_text(counts, pair.complete)}"
    if any(d.ci_over == CI_OVER_EPISODES for d in pair.marks):
        text += " (with one seed the CI is across paired evaluation episodes)"
    return text if pair.complete else f"{text}; {INCOMPLETE_NOTE}"


def _values(runs: Sequence[RunRecord], name: str) -> str:
    vals = []
    for r in runs:
        if name in r.args and repr(r.args[name]) not in vals:
            vals.append(repr(r.args[name]))
    return " / ".join(v.strip("'") for v in vals)


def knobs_table(runs: Sequence[RunRecord]) -> list[str]:
    rows = []
    for s in group_series(runs):
        seeds = sorted({r.seed for r in s.runs}, key=lambda x: (x is None, x or 0))
        knobs = [f"{k}={v}" for k in KNOBS if (v := _values(s.runs, k))]
        rows.append([s.label, str(len(s.runs)), " ".join("?" if x is None else str(x) for x in seeds),
                     ", ".join(knobs) or "–"])
    return markdown_table(("series", "runs", "seeds", "knobs (run.json args)"), rows,
                          (False, True, False, False))


def _difference_rows(pair: PairSummary) -> list[list[str]]:
    def row(d: MarkDifference) -> list[str]:
        return [str(d.mark), str(len(d.seeds)), d.ci_over, _num(d.offline), _num(d.online),
                _num(d.difference), _ci(d.ci_low, d.ci_high), verdict_text(d)]
    return [row(d) for d in pair.marks]


PLAN_INFERRED = ("The plan is inferred from the runs found (no launcher registry): every seed seen "
                 "is expected of every series, every mark a run of a series (or its online run) "
                 "evaluated of all its runs, and a run's recorded `intervals` of it.")


def _pairs_section(summary: ExperimentSummary) -> list[str]:
    pct = summary.settings.percent
    out = ["", f"## Offline - online (paired, {pct} bootstrap CI)", ""]
    if not summary.pairs:
        return out + ["No offline run with an evaluated online partner yet."]
    out += [f"- {reading(p, pct)}" for p in summary.pairs]
    for p in summary.pairs:
        note = "" if p.complete else f" ({INCOMPLETE_NOTE})"
        out += ["", f"**{p.offline.label} - {p.online_label}**{note}", ""]
        out += markdown_table(("x", "seeds", "CI over", "offline", "online", "difference",
                               f"{pct} CI", "verdict"), _difference_rows(p),
                              (True, True, False, True, True, True, False, False))
    return out


def _estimates_section(summary: ExperimentSummary) -> list[str]:
    pct = summary.settings.percent
    out = ["", f"## Evaluation return (estimate and {pct} bootstrap CI)", "",
           "Several seeds: the mean of the seeds' mean returns, CI across seeds (IQM across seeds "
           "too from 4 seeds). One seed: its mean return, CI across its evaluation episodes.", ""]
    incomplete = [ss.series.label for ss in summary.series if not ss.complete and ss.marks]
    if incomplete:
        out += [f"Incomplete series (see What is missing): {', '.join(incomplete)}.", ""]
    rows = []
    for ss in summary.series:
        for m in ss.marks:
            iqm = f"{m.iqm.estimate:.1f} {_ci(m.iqm.low, m.iqm.high)}" if m.iqm else ""
            rows.append([ss.series.label, str(m.mark), str(len(m.seeds)), str(m.episodes), m.ci_over,
                         _num(m.estimate), _ci(m.ci_low, m.ci_high), iqm])
    if not rows:
        return out + ["No evaluation yet."]
    return out + markdown_table(("series", "x", "seeds", "episodes", "CI over", "estimate",
                                 f"{pct} CI", "IQM [CI]"), rows,
                                (False, True, True, True, False, True, False, False))


def _missing_section(summary: ExperimentSummary, plan_source: str | None) -> list[str]:
    plan = f"The planned runs are the training jobs of {plan_source}." if plan_source else PLAN_INFERRED
    out = ["", "## What is missing", "", plan, ""]
    return out + ([f"- {line}" for line in summary.missing] or [NOTHING_MISSING])


def _method_section(summary: ExperimentSummary) -> list[str]:
    st = summary.settings
    return ["", "## How the intervals are computed", "",
            f"Percentile bootstrap ({st.reps} resamples, seed {st.seed}) with rliable's "
            "stratified bootstrap (Agarwal et al., NeurIPS 2021), each mark on its own. "
            "Paired differences resample the seeds (one seed: the episodes) with their offline "
            "and online values together; the episodes of an offline run and its online run "
            "start from the same reset seeds. With few seeds a bootstrap interval cannot reach "
            "beyond the seeds' range and is too narrow: with 3 seeds read it as a description of "
            "the seeds, not as a guarantee. A difference from one seed over fewer than "
            f"{MIN_EPISODES_FOR_VERDICT} paired episodes gets no verdict (too few episodes).", ""]


_VIDEO_NAME = re.compile(r"eval_mark(\d+)_limit(\d+)\.mp4")


def videos_section(runs: Sequence[RunRecord], report_dir: Path) -> list[str]:
    """``## Evaluation videos``: per run with videos (``{run}/videos/*.mp4``, written with
    ``--eval_video``), a link to each, relative to ``report_dir``; nothing when no run has one."""
    lines = []
    for run in sorted(runs, key=lambda r: r.run_id):
        videos = sorted(Path(run.path, VIDEO_DIR).glob("eval_*.mp4"))
        links = []
        for video in videos:
            m = _VIDEO_NAME.fullmatch(video.name)
            label = f"mark {int(m[1])} (x={int(m[2])})" if m else video.name
            links.append(f"[{label}](<{Path(os.path.relpath(video, report_dir)).as_posix()}>)")
        if links:
            lines.append(f"- {run.run_id}: " + ", ".join(links))
    if not lines:
        return []
    return ["", "## Evaluation videos", "", "The first evaluation episode at each mark, one frame "
            "per agent step (BlendRL: the logic weight and the clauses that fire most beside "
            "the frame).", ""] + lines


def report_markdown(exp_id: str, runs: Sequence[RunRecord], summary: ExperimentSummary,
                    figures: Sequence[str], plan_source: str | None = None,
                    report_dir: Path | None = None) -> str:
    """The text of ``report.md``; ``figures`` are the PNG file names written next to it;
    ``plan_source`` names the registry the planned runs came from (None: inferred);
    ``report_dir``: the folder it is written to (the videos are linked relative to it; None: no
    video section)."""
    envs = ", ".join(sorted({r.env for r in runs}))
    seeds = sorted({r.seed for r in runs}, key=lambda x: (x is None, x or 0))
    n_online = sum(r.kind == "online" for r in runs)
    out = [f"# Experiment {exp_id}: online vs offline on the same experience", "",
           f"{len(runs)} runs ({n_online} online, {len(runs) - n_online} offline) on {envs}; "
           f"seeds {', '.join('?' if s is None else str(s) for s in seeds)}. x = environment "
           "transitions: the online agent after x transitions, the offline agent trained on the "
           "first x transitions of that online run, both evaluated on the same episode starts.", "",
           "## Knobs", ""]
    out += knobs_table(runs)
    out += ["", "## Figures", ""]
    out += [f"![{name[:-4].replace('_', ' ')}]({name})" for name in figures] or ["No figure yet."]
    out += _pairs_section(summary)
    out += _estimates_section(summary)
    out += _missing_section(summary, plan_source)
    out += [] if report_dir is None else videos_section(runs, report_dir)
    out += ["", "## Timing", "", TIMING_NOTE, ""]
    out += timing_summary_table(run_timings(runs))
    out += _method_section(summary)
    return "\n".join(out)
