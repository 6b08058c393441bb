"""The interval estimates of an experiment: per series and mark a point estimate with its
bootstrap CI (``summary.csv``), and per offline series the paired difference offline - online at
each mark (``paired_differences.csv``), with what is missing. Numbers only, no drawing.

Per series (method, dataset source, env) and evaluation mark x (a ``data_limit``):

* several runs (seeds) evaluated at x: the estimate is the mean of the runs' mean returns and the
  CI is a bootstrap across those means (``ci_over = "seeds"``); with 4 seeds or more the IQM of
  the runs' means too, with its own CI;
* one run: its mean return, the CI a bootstrap across its evaluation episodes
  (``ci_over = "episodes"``; none without per-episode ``returns``).

Paired differences: an offline run and the online run whose dataset it trained on
(``dataset_source.run_id`` in its ``run.json``; failing that, the online run of that method with
the same env and seed) were evaluated at the same marks from the same episode starts (docs/DESIGN.md
section 7: episode j of both starts from the reset seed ``eval_seed(seed) + j``, and sampled
actions draw on uniforms seeded the same way). At each mark:

* several pairs: d_k = offline mean - online mean of seed k; the estimate is the mean of the d_k
  and the CI a bootstrap across seeds, which resamples each seed's offline and online values
  together (a paired bootstrap);
* one pair: d_j = offline return - online return of episode j, over the first
  ``min(n_offline, n_online)`` episodes (the starts agree episode by episode whatever the episode
  counts); the CI a bootstrap across episodes.

A run counts at a mark with its last evaluation there (a rerun after a resume). Estimates use what
is there; :attr:`ExperimentSummary.missing` says what is not, run by run with the reason
(:mod:`blendrl.plotting.gaps`), and :attr:`SeriesSummary.complete` / :attr:`PairSummary.complete`
whether a series lacks anything (the figures mark those that do).

A verdict from one seed rests on its evaluation episodes alone: with fewer than
:data:`MIN_EPISODES_FOR_VERDICT` paired episodes it is ``too few episodes``, never above/below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from blendrl.plotting.collect import RunRecord, seed_name
from blendrl.plotting.gaps import latest_by_mark, run_gap
from blendrl.plotting.planned import AbsentRun
from blendrl.plotting.series import Series, group_series
from blendrl.plotting.stats import (IQM_MIN_SEEDS, STATISTICS, BootstrapSettings, Interval,
                                    interval_estimates)

CI_OVER_SEEDS = "seeds"
CI_OVER_EPISODES = "episodes"
_NO_CI = float("nan")
MIN_EPISODES_FOR_VERDICT = 10
"""A one-seed paired difference over fewer evaluation episodes gets no above/below verdict."""
TOO_FEW_EPISODES = "too few episodes"


@dataclass(frozen=True)
class MarkEstimate:
    """The evaluation return of one series at one mark."""

    mark: int
    seeds: tuple[int | None, ...]
    """the seeds of the runs that evaluated at this mark"""
    episodes: int
    """evaluation episodes behind the estimate (summed over those runs)"""
    estimate: float
    ci_low: float
    """NaN when there is no interval (one run without per-episode returns)"""
    ci_high: float
    ci_over: str
    """``seeds`` or ``episodes``"""
    iqm: Interval | None = None
    """the IQM across seeds and its CI (4 seeds or more), else None"""

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))


@dataclass(frozen=True)
class MarkDifference:
    """offline - online of one offline series at one mark."""

    mark: int
    seeds: tuple[int | None, ...]
    """the seeds with both an offline and an online evaluation at this mark"""
    episodes: int
    """paired episodes (one seed: those the difference is over; several: summed offline episodes)"""
    difference: float
    ci_low: float
    ci_high: float
    ci_over: str
    offline: float
    """mean of the offline values that entered the difference"""
    online: float

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.ci_low) or math.isnan(self.ci_high))

    @property
    def too_few_episodes(self) -> bool:
        """One seed, over fewer than :data:`MIN_EPISODES_FOR_VERDICT` paired episodes."""
        return len(self.seeds) == 1 and self.episodes < MIN_EPISODES_FOR_VERDICT

    @property
    def verdict(self) -> str:
        """``above`` / ``below`` (the CI excludes 0 on that side), ``inconclusive``, ``no CI``, or
        ``too few episodes`` (one seed with fewer than 10 paired episodes: no above/below)."""
        if not self.has_ci:
            return "no CI"
        if self.too_few_episodes:
            return TOO_FEW_EPISODES
        if self.ci_low > 0:
            return "above"
        if self.ci_high < 0:
            return "below"
        return "inconclusive"


@dataclass
class SeriesSummary:
    series: Series
    marks: list[MarkEstimate]
    complete: bool = True
    """False when "What is missing" lists a gap of this series"""


@dataclass
class PairSummary:
    """An offline series against the online series whose data it trained on."""

    offline: Series
    online_label: str
    """the label of the online series it is compared with ("PPO (online)")"""
    marks: list[MarkDifference]
    complete: bool = True
    """False when the offline series or an online series it is compared with lacks anything"""


@dataclass
class ExperimentSummary:
    settings: BootstrapSettings
    series: list[SeriesSummary] = field(default_factory=list)
    pairs: list[PairSummary] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """one line per gap: a planned run without a run, a run without some marks or with a broken
    or partial result (with why), an unpaired run"""
    incomplete: set[str] = field(default_factory=set)
    """the keys (:attr:`Series.key`) of the series with a gap"""


class IntervalBatch:
    """Samples to bootstrap, each with its own key, resolved together: one rliable bootstrap per
    statistic and sample size (each sample a column with its own generator, so the result is the
    same as bootstrapping it alone)."""

    def __init__(self, settings: BootstrapSettings):
        self.settings = settings
        self._samples: dict[str, list[Sequence[float]]] = {s: [] for s in STATISTICS}
        self._keys: dict[str, list[str]] = {s: [] for s in STATISTICS}
        self._done: dict[str, list[Interval | None]] = {}

    def add(self, sample: Sequence[float], key: str,
            statistic: str = "mean") -> Callable[[], Interval | None]:
        """Queue ``sample``; the returned function gives its interval (computing the batch once)."""
        if self._done:
            raise RuntimeError("this batch has been resolved; start another")
        i = len(self._samples[statistic])
        self._samples[statistic].append(sample)
        self._keys[statistic].append(key)
        return lambda: self._resolved(statistic)[i]

    def _resolved(self, statistic: str) -> list[Interval | None]:
        if not self._done:  # the first read resolves (and closes) every statistic's queue
            for s in STATISTICS:
                self._done[s] = interval_estimates(self._samples[s], s, self.settings,
                                                   self._keys[s])
        return self._done[statistic]


def _seed_sort(seeds: Sequence[int | None]) -> tuple[int | None, ...]:
    return tuple(sorted(seeds, key=lambda s: (s is None, s if s is not None else 0)))


def _bounds(iv: Interval | None) -> tuple[float, float]:
    return (_NO_CI, _NO_CI) if iv is None else (iv.low, iv.high)


def _plan_marks(series: Series, batch: IntervalBatch) -> list[Callable[[], MarkEstimate]]:
    """The estimate of ``series`` at every mark any of its runs evaluated (module docstring), as
    functions to call once ``batch`` is complete."""
    per_run = [(r, latest_by_mark(r.evaluations)) for r in series.runs]
    marks = sorted({m for _, evs in per_run for m in evs})
    out = []
    for mark in marks:
        at = [(r, evs[mark]) for r, evs in per_run if mark in evs]
        seeds = _seed_sort([r.seed for r, _ in at])
        episodes = sum(len(e.returns) for _, e in at)
        key = f"{series.key}|{mark}"
        if len(at) > 1:
            means = [e.mean for _, e in at]
            mean = batch.add(means, key)
            iqm = batch.add(means, key, "iqm") if len(at) >= IQM_MIN_SEEDS else (lambda: None)
            out.append(lambda m=mark, s=seeds, n=episodes, mean=mean, iqm=iqm, est=float(np.mean(means)):
                       MarkEstimate(m, s, n, est, *_bounds(mean()), CI_OVER_SEEDS, iqm()))
            continue
        (_, e), = at
        ci = batch.add(e.returns, key) if e.returns else (lambda: None)
        out.append(lambda m=mark, s=seeds, n=episodes, ci=ci, est=e.mean:
                   MarkEstimate(m, s, n, est, *_bounds(ci()), CI_OVER_EPISODES))
    return out


def _online_partner(run: RunRecord, runs: Sequence[RunRecord]) -> RunRecord | None:
    """The online run whose dataset ``run`` (offline) trained on, among ``runs``."""
    if run.source_run_id is not None:
        for r in runs:
            if r.kind == "online" and r.run_id == run.source_run_id:
                return r
        return None
    same = [r for r in runs if r.kind == "online" and r.method == run.source_method
            and r.env == run.env and r.seed == run.seed]
    return same[0] if len(same) == 1 else None


def _plan_differences(pairs: Sequence[tuple[RunRecord, RunRecord]], key: str,
                      batch: IntervalBatch) -> list[Callable[[], MarkDifference]]:
    """offline - online at every mark where at least one (offline, online) pair has both, as
    functions to call once ``batch`` is complete."""
    per_pair = [(off, latest_by_mark(off.evaluations), latest_by_mark(on.evaluations))
                for off, on in pairs]
    marks = sorted({m for _, o, n in per_pair for m in o if m in n})
    out = []
    for mark in marks:
        at = [(off, o[mark], n[mark]) for off, o, n in per_pair if mark in o and mark in n]
        seeds = _seed_sort([off.seed for off, _, _ in at])
        mkey = f"{key}|{mark}"
        if len(at) > 1:
            diffs = [eo.mean - en.mean for _, eo, en in at]
            ci = batch.add(diffs, mkey)
            fixed = (mark, seeds, sum(len(eo.returns) for _, eo, _ in at), float(np.mean(diffs)))
            means = (float(np.mean([eo.mean for _, eo, _ in at])),
                     float(np.mean([en.mean for _, _, en in at])))
            out.append(lambda f=fixed, ci=ci, means=means:
                       MarkDifference(*f, *_bounds(ci()), CI_OVER_SEEDS, *means))
            continue
        (_, eo, en), = at
        n = min(len(eo.returns), len(en.returns))
        if n:
            off_r, on_r = np.asarray(eo.returns[:n]), np.asarray(en.returns[:n])
            ci = batch.add(off_r - on_r, mkey)
            fixed = (mark, seeds, n, float(np.mean(off_r - on_r)))
            means = (float(off_r.mean()), float(on_r.mean()))
        else:
            ci, fixed, means = (lambda: None), (mark, seeds, 0, eo.mean - en.mean), (eo.mean, en.mean)
        out.append(lambda f=fixed, ci=ci, means=means:
                   MarkDifference(*f, *_bounds(ci()), CI_OVER_EPISODES, *means))
    return out


def _pair_of(run: RunRecord, partner: RunRecord | None, label: str) -> str | None:
    """The "is not paired" line of an offline run without its online run, else None."""
    if partner is not None:
        return None
    where = (f"its dataset's run {run.source_run_id} is not a run of this experiment"
             if run.source_run_id else "no unique online run with its method, env and seed")
    return f"{label}: {seed_name(run.seed)} ({run.run_id}) is not paired: {where}"


def _find_missing(series: Series, expected_seeds: set[int | None] | None,
                  partners: dict[str, RunRecord | None] | None = None) -> list[str]:
    """The gaps of one series: seeds of the experiment without a run (``expected_seeds``; None
    when the planned runs are known otherwise), and per run the planned marks without a valid
    evaluation, or a broken or partial result, with why (:func:`blendrl.plotting.gaps.run_gap`)."""
    partners = partners or {}
    lines = []
    have = {r.seed for r in series.runs}
    for seed in _seed_sort(list((expected_seeds or set()) - have)):
        lines.append(f"{series.label}: {seed_name(seed)} has no run")
    expected = {m for r in series.runs for m in latest_by_mark(r.evaluations)}
    for r in series.runs:
        if partners.get(r.run_id) is not None:
            expected |= set(latest_by_mark(partners[r.run_id].evaluations))
    for r in sorted(series.runs, key=lambda r: r.run_id):
        gap = run_gap(series.label, r, expected, partners.get(r.run_id))
        if gap is not None:
            lines.append(gap.line)
    return lines


def _plan_pairs(all_series: Sequence[Series], partners: dict[str, RunRecord | None],
                batch: IntervalBatch, out: ExperimentSummary) -> list[tuple]:
    """Per offline series with a paired run: (series, online labels, online series keys, planned
    differences); an unpaired run becomes a line of ``out.missing``."""
    by_run = {r.run_id: s for s in all_series for r in s.runs}
    planned = []
    for s in (s for s in all_series if s.kind == "offline"):
        pairs = []
        for r in s.runs:
            line = _pair_of(r, partners[r.run_id], s.label)
            if line is None:
                pairs.append((r, partners[r.run_id]))
            else:
                out.missing.append(line)
                out.incomplete.add(s.key)
        if pairs:
            online = [by_run[on.run_id] for _, on in pairs]
            planned.append((s, " / ".join(sorted({o.label for o in online})),
                            {o.key for o in online},
                            _plan_differences(pairs, f"difference|{s.key}", batch)))
    return planned


def _series_gaps(all_series: Sequence[Series], runs: Sequence[RunRecord],
                 partners: dict[str, RunRecord | None], absent: Sequence[AbsentRun] | None,
                 out: ExperimentSummary) -> None:
    """``out.missing`` and ``out.incomplete``: the planned runs without a run (``absent``; when
    None, each seed seen in an env is expected of every series there) and each series' gaps."""
    seeds_by_env: dict[str, set[int | None]] = {}
    for r in runs:
        seeds_by_env.setdefault(r.env, set()).add(r.seed)
    absent_keys = {a.key for a in absent or ()}
    out.missing += [a.line for a in absent or ()]
    for s in all_series:
        lines = _find_missing(s, None if absent is not None else seeds_by_env[s.env], partners)
        out.missing += lines
        if lines or (s.method, s.source_method) in absent_keys:
            out.incomplete.add(s.key)


def summarize(runs: Sequence[RunRecord], settings: BootstrapSettings,
              absent: Sequence[AbsentRun] | None = None) -> ExperimentSummary:
    """The estimates, paired differences and gaps of the runs of one experiment. ``absent``: the
    planned runs of which no run was found (from the launcher's registry,
    :mod:`blendrl.plotting.planned`); None when the plan is not known (it is inferred)."""
    out = ExperimentSummary(settings)
    batch = IntervalBatch(settings)
    all_series = group_series(runs)
    partners: dict[str, RunRecord | None] = {r.run_id: _online_partner(r, runs)
                                            for r in runs if r.kind == "offline"}
    planned_series = [(s, _plan_marks(s, batch)) for s in all_series]
    _series_gaps(all_series, runs, partners, absent, out)
    planned_pairs = _plan_pairs(all_series, partners, batch, out)
    out.series = [SeriesSummary(s, [make() for make in plan], s.key not in out.incomplete)
                  for s, plan in planned_series]
    out.pairs = [PairSummary(s, label, [make() for make in plan],
                             not ({s.key} | online_keys) & out.incomplete)
                 for s, label, online_keys, plan in planned_pairs]
    return out
