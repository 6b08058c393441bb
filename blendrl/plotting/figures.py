"""The figures of an experiment, drawn on plain :class:`matplotlib.figure.Figure` objects with
the non-interactive Agg canvas (no pyplot, no global state).

Each ``plot_*`` function returns the Figure (so its data can be read back: ``Line2D`` data,
``ErrorbarContainer``\\ s, the ``PolyCollection`` of a band) or None when there is nothing to draw.
Every x is a number of environment transitions (docs/DESIGN.md section 7). Legends sit below the axes,
outside the data; the layout is constrained so nothing is cut. Intervals are bootstrap CIs
(:mod:`blendrl.plotting.stats`); the subtitles say across what. In the evaluation figures a series
that lacks something (:attr:`SeriesSummary.complete`, :attr:`PairSummary.complete`: a run, a mark,
a valid result) is drawn with hollow markers, and the legend then says what hollow means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter
from matplotlib.transforms import offset_copy

from blendrl.file_io import atomic_writer
from blendrl.plotting.collect import RunRecord
from blendrl.plotting.curves import (band_interval, collapse_duplicates, logic_weight_points,
                                     seed_band, trailing_mean)
from blendrl.plotting.series import Style, group_series
from blendrl.plotting.stats import BootstrapSettings
from blendrl.plotting.summary import CI_OVER_SEEDS, ExperimentSummary, summarize

X_LABEL = "environment transitions"
LEGEND_WIDTH_CHARS = 150
"""Roughly how many characters of legend text fit across the figure (sets the legend columns)."""
MAX_LABELLED_TICKS = 12
"""Up to this many distinct interval marks, the x ticks sit exactly on the marks."""
ERRORBAR_SPREAD_POINTS = 4.0
"""Horizontal display offset (in points) between series drawn at the same x, so error bars do
not hide each other; the plotted data keep their exact x."""
BAND_ALPHA = 0.18
INCOMPLETE_LABEL = "hollow markers: incomplete (see report.md)"
"""The legend entry explaining hollow markers, present when a series is incomplete."""
HOLLOW = "none"
"""``markerfacecolor`` of an incomplete series' markers."""


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _new_figure(title: str, subtitle: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(9.0, 5.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fig.suptitle(title, fontsize="large", fontweight="bold")
    ax.set_title(subtitle, fontsize="small", color="0.3")
    ax.set_xlabel(X_LABEL)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(True, alpha=0.3)
    return fig, ax


def _incomplete_key() -> Line2D:
    """A legend-only handle: a hollow grey marker labelled :data:`INCOMPLETE_LABEL`."""
    return Line2D([], [], color="0.35", marker="o", markerfacecolor=HOLLOW, linestyle="none",
                  label=INCOMPLETE_LABEL)


def _marker_fill(complete: bool) -> dict:
    """Errorbar keywords: hollow markers for an incomplete series."""
    return {} if complete else {"markerfacecolor": HOLLOW}


def _finish(fig: Figure, ax: Axes, incomplete: bool = False) -> None:
    """The legend below the axes (never over the data), in as many columns as fit the width;
    with ``incomplete``, an entry saying what hollow markers mean."""
    handles, labels = ax.get_legend_handles_labels()
    if incomplete:
        handles, labels = [*handles, _incomplete_key()], [*labels, INCOMPLETE_LABEL]
    if handles:
        longest = max(len(label) for label in labels)
        ncols = max(1, min(len(handles), LEGEND_WIDTH_CHARS // (longest + 8)))
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize="small",
                   frameon=False)


def _shift(fig: Figure, ax: Axes, container: ErrorbarContainer, points: float) -> None:
    """Draw an errorbar ``points`` to the right of its x, keeping its data (and autoscaling)."""
    moved = offset_copy(ax.transData, fig=fig, x=points, units="points")
    line, caps, bars = container.lines
    for artist in (line, *caps, *bars):
        if artist is not None:
            artist.set_transform(moved)


def _envs(runs: Sequence[RunRecord]) -> str:
    return ", ".join(sorted({r.env for r in runs}))


def _ticks_on_marks(ax: Axes, marks: set[float]) -> None:
    if 0 < len(marks) <= MAX_LABELLED_TICKS:
        ax.set_xticks(sorted(marks))


def _curve_with_band(ax: Axes, curves: list[tuple[np.ndarray, np.ndarray]], style: Style,
                     label: str, settings: BootstrapSettings, key: str) -> None:
    """The mean of the seeds' curves, and its bootstrap CI band where two seeds or more cover x."""
    band = seed_band(curves)
    ax.plot(band.x, band.mean, color=style.color, linestyle=style.linestyle, linewidth=1.8,
            marker="o" if band.x.size == 1 else None,  # a lone point stays visible
            label=label)
    low, high = band_interval(band, settings, key)
    several = np.isfinite(low)
    if several.any():
        ax.fill_between(band.x, np.where(several, low, band.mean), np.where(several, high, band.mean),
                        where=several, color=style.color, alpha=BAND_ALPHA, linewidth=0)


def _interval_errorbar(fig: Figure, ax: Axes, x: np.ndarray, y: np.ndarray, low: np.ndarray,
                       high: np.ndarray, style: Style, label: str, shift: float,
                       band: np.ndarray | None = None, **kwargs) -> ErrorbarContainer:
    """Points with asymmetric error bars from ``low`` to ``high`` (no bar where they are NaN),
    drawn ``shift`` points to the side; a band at the exact x where ``band`` is True."""
    lo = np.where(np.isnan(low), y, low)
    hi = np.where(np.isnan(high), y, high)
    c = ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), color=style.color, marker=style.marker,
                    capsize=3, label=label, **kwargs)
    _shift(fig, ax, c, shift)
    if band is not None and band.any():
        ax.fill_between(x, lo, hi, where=band, color=style.color, alpha=BAND_ALPHA, linewidth=0)
    return c


def plot_online_returns(runs: Sequence[RunRecord], exp_id: str, smooth_window: int,
                        settings: BootstrapSettings | None = None) -> Figure | None:
    """Training episodic return of each online method against environment transitions: each
    seed smoothed over its last ``smooth_window`` episodes, the seeds averaged on a common grid,
    a shaded band = the bootstrap CI of that mean across seeds. None when no online run has a
    finished episode."""
    settings = settings or BootstrapSettings()
    online = [r for r in runs if r.kind == "online" and r.curves and r.curves.episode_steps]
    if not online:
        return None
    fig, ax = _new_figure(
        f"{exp_id}: online learning curves ({_envs(online)})",
        f"training episodes, trailing mean over {smooth_window} episode(s)\nline: mean across "
        f"seeds, band: {settings.percent} bootstrap CI of that mean across seeds (where ≥2 seeds)")
    for s in group_series(online):
        curves = [collapse_duplicates(r.curves.episode_steps,
                                      trailing_mean(r.curves.episode_returns, smooth_window))
                  for r in s.runs]
        _curve_with_band(ax, curves, s.style, f"{s.label}, {_seeds(len(s.runs))}", settings,
                         f"online_returns|{s.key}")
    ax.set_ylabel("episodic return (training)")
    _finish(fig, ax)
    return fig


def plot_interval_comparison(runs: Sequence[RunRecord], exp_id: str,
                             summary: ExperimentSummary | None = None,
                             settings: BootstrapSettings | None = None) -> Figure | None:
    """Evaluated return at each interval mark: the online methods' evaluations and each offline
    method trained on the first x transitions of an online run -- the estimate of
    :mod:`blendrl.plotting.summary` with its bootstrap CI as error bars (across seeds; across
    evaluation episodes where one seed evaluated), shaded where several seeds. ``summary`` is
    computed from ``runs`` when not given. None when nothing was evaluated."""
    evaluated = [r for r in runs if r.evaluations]
    if not evaluated:
        return None
    summary = summary or summarize(evaluated, settings or BootstrapSettings())
    pct = summary.settings.percent
    fig, ax = _new_figure(
        f"{exp_id}: online vs offline on the same experience ({_envs(evaluated)})",
        "evaluation return after x transitions (offline: trained on the first x transitions of the "
        f"online run)\nerror bars: {pct} bootstrap CI of the mean across seeds (shaded where ≥2 "
        "seeds); where one seed, across its evaluation episodes")
    shown = [ss for ss in summary.series if ss.marks]
    marks: set[float] = set()
    for i, ss in enumerate(shown):
        s = ss.series
        x = np.array([m.mark for m in ss.marks], dtype=np.float64)
        marks.update(x.tolist())
        _interval_errorbar(
            fig, ax, x, np.array([m.estimate for m in ss.marks]),
            np.array([m.ci_low for m in ss.marks]), np.array([m.ci_high for m in ss.marks]),
            s.style, f"{s.label}, {_seeds(len(set().union(*(m.seeds for m in ss.marks))))}",
            (i - (len(shown) - 1) / 2) * ERRORBAR_SPREAD_POINTS,
            band=np.array([m.ci_over == CI_OVER_SEEDS for m in ss.marks]),
            linestyle=s.style.linestyle, markersize=5, linewidth=1.5, **_marker_fill(ss.complete))
    _ticks_on_marks(ax, marks)
    ax.set_ylabel("episodic return (evaluation)")
    _finish(fig, ax, incomplete=not all(ss.complete for ss in shown))
    return fig


def plot_paired_differences(runs: Sequence[RunRecord], exp_id: str,
                            summary: ExperimentSummary | None = None,
                            settings: BootstrapSettings | None = None) -> Figure | None:
    """offline - online at each mark for every offline series, with its paired bootstrap CI
    (across seeds; across paired episodes where one seed) and the zero line. None when no
    offline run has an evaluated online partner."""
    summary = summary or summarize(runs, settings or BootstrapSettings())
    pairs = [p for p in summary.pairs if p.marks]
    if not pairs:
        return None
    pct = summary.settings.percent
    fig, ax = _new_figure(
        f"{exp_id}: offline minus online at the same x ({_envs(runs)})",
        "evaluation return of the offline agent trained on the first x transitions minus the online "
        f"agent after x transitions\nerror bars: {pct} paired bootstrap CI across seeds (shaded "
        "where ≥2 seeds); where one seed, across paired evaluation episodes (same starts)")
    ax.axhline(0.0, color="black", linewidth=1.0, zorder=1)
    marks: set[float] = set()
    for i, p in enumerate(pairs):
        s = p.offline
        x = np.array([d.mark for d in p.marks], dtype=np.float64)
        marks.update(x.tolist())
        seeds = max(len(d.seeds) for d in p.marks)
        _interval_errorbar(
            fig, ax, x, np.array([d.difference for d in p.marks]),
            np.array([d.ci_low for d in p.marks]), np.array([d.ci_high for d in p.marks]),
            s.style, f"{s.label} - {p.online_label}, {_seeds(seeds)}",
            (i - (len(pairs) - 1) / 2) * ERRORBAR_SPREAD_POINTS,
            band=np.array([d.ci_over == CI_OVER_SEEDS for d in p.marks]),
            linestyle=s.style.linestyle, markersize=5, linewidth=1.5, **_marker_fill(p.complete))
    _ticks_on_marks(ax, marks)
    ax.set_ylabel("offline − online episodic return (evaluation)")
    _finish(fig, ax, incomplete=not all(p.complete for p in pairs))
    return fig


def plot_blend_weights(runs: Sequence[RunRecord], exp_id: str,
                       settings: BootstrapSettings | None = None) -> Figure | None:
    """The logic actor's share in the BlendRL blend: over online training (``training_log.pkl``
    ``blend``, mean across seeds with its bootstrap CI band) and at each evaluation
    (``results.json`` ``logic_weight``, online and offline, error bars = the bootstrap CI across
    seeds; none for one seed). None without BlendRL data."""
    settings = settings or BootstrapSettings()
    blend = [r for r in runs if r.is_blendrl]
    training = [r for r in blend if r.kind == "online" and r.curves and r.curves.blend_steps]
    evaluated = [r for r in blend if any(e.logic_weight is not None for e in r.evaluations)]
    if not training and not evaluated:
        return None
    pct = settings.percent
    fig, ax = _new_figure(
        f"{exp_id}: share of the logic actor in the BlendRL blend ({_envs(training + evaluated)})",
        f"lines: online training updates (mean across seeds, band: {pct} bootstrap CI across seeds)"
        f"\nmarkers: evaluations (error bars: {pct} bootstrap CI across seeds)")
    for s in group_series(training):
        curves = [collapse_duplicates(r.curves.blend_steps, r.curves.logic_weight_mean)
                  for r in s.runs]
        _curve_with_band(ax, curves, s.style, f"{s.label} training, {_seeds(len(s.runs))}",
                         settings, f"blend_training|{s.key}")
    series = group_series(evaluated)
    marks: set[float] = set()
    for i, s in enumerate(series):
        pts = logic_weight_points([r.evaluations for r in s.runs], settings, f"blend_eval|{s.key}")
        marks.update(pts.x.tolist())
        _interval_errorbar(fig, ax, pts.x, pts.y, pts.low, pts.high, s.style,
                           f"{s.label} evaluation, {_seeds(len(s.runs))}",
                           (i - (len(series) - 1) / 2) * ERRORBAR_SPREAD_POINTS,
                           linestyle="none", markersize=6, markeredgecolor="black",
                           markeredgewidth=0.6)
    _ticks_on_marks(ax, marks)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("logic weight $w_l$ (share of the logic actor)")
    _finish(fig, ax)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> None:
    """Write ``fig`` as PNG atomically (``blendrl.file_io.atomic_writer``: a temp file in the
    same folder, then ``os.replace``; readable by all, like the other results)."""
    with atomic_writer(path) as f:
        fig.savefig(f, format="png", dpi=dpi)
