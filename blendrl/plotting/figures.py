"""The three figures of an experiment, drawn on plain :class:`matplotlib.figure.Figure` objects
with the non-interactive Agg canvas (no pyplot, no global state).

Each ``plot_*`` function returns the Figure (so its data can be read back: ``Line2D`` data,
``ErrorbarContainer``\\ s, the ``PolyCollection`` of a band) or None when there is nothing to draw.
Every x is a number of environment transitions (DESIGN.md section 7). Legends sit below the axes,
outside the data; the layout is constrained so nothing is cut.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter
from matplotlib.transforms import offset_copy

from blendrl.plotting.collect import METHOD_LABELS, RunRecord, series_label
from blendrl.plotting.curves import (collapse_duplicates, logic_weight_points, return_points,
                                     seed_band, trailing_mean)

X_LABEL = "environment transitions"
LEGEND_WIDTH_CHARS = 150
"""Roughly how many characters of legend text fit across the figure (sets the legend columns)."""
MAX_LABELLED_TICKS = 12
"""Up to this many distinct interval marks, the x ticks sit exactly on the marks."""
ERRORBAR_SPREAD_POINTS = 4.0
"""Horizontal display offset (in points) between series drawn at the same x, so error bars do
not hide each other; the plotted data keep their exact x."""


@dataclass(frozen=True)
class Style:
    color: str
    marker: str
    linestyle: str


# Explicit style of each (method, dataset source) pair: colour = method, line style = data source.
STYLES: dict[tuple[str, str | None], Style] = {
    ("ppo", None): Style("tab:blue", "o", "-"),
    ("blendrl_ppo", None): Style("tab:orange", "o", "-"),
    ("iql", "ppo"): Style("tab:green", "s", "--"),
    ("iql", "blendrl_ppo"): Style("tab:olive", "s", ":"),
    ("blendrl_iql", "ppo"): Style("tab:purple", "^", "--"),
    ("blendrl_iql", "blendrl_ppo"): Style("tab:red", "^", ":"),
}
FALLBACK_STYLE = Style("tab:gray", "x", "-.")

METHOD_ORDER = tuple(METHOD_LABELS)


@dataclass(frozen=True)
class Series:
    """The runs (seeds) of one method on one dataset source (and one env)."""

    method: str
    source_method: str | None
    kind: str
    env: str
    label: str
    runs: tuple[RunRecord, ...]

    @property
    def style(self) -> Style:
        return STYLES.get((self.method, self.source_method), FALLBACK_STYLE)


def group_series(runs: Sequence[RunRecord]) -> list[Series]:
    """Runs grouped by (method, dataset source, env): online methods first, in method order.

    The env joins the label only when the runs span several envs."""
    several_envs = len({r.env for r in runs}) > 1
    groups: dict[tuple[str, str | None, str], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.method, r.source_method, r.env), []).append(r)

    def order(key: tuple[str, str | None, str]) -> tuple:
        method, source, env = key
        rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
        src = METHOD_ORDER.index(source) if source in METHOD_ORDER else len(METHOD_ORDER)
        return (rank, src, env)

    out = []
    for key in sorted(groups, key=order):
        method, source, env = key
        kind = groups[key][0].kind
        label = series_label(method, source, kind) + (f" [{env}]" if several_envs else "")
        out.append(Series(method, source, kind, env, label, tuple(groups[key])))
    return out


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


def _finish(fig: Figure, ax: Axes) -> None:
    """The legend below the axes (never over the data), in as many columns as fit the width."""
    handles, labels = ax.get_legend_handles_labels()
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


def plot_online_returns(runs: Sequence[RunRecord], exp_id: str, smooth_window: int) -> Figure | None:
    """Training episodic return of each online method against environment transitions: each
    seed smoothed over its last ``smooth_window`` episodes, the seeds averaged on a common grid,
    a shaded band of +-1 std across seeds. None when no online run has a finished episode."""
    online = [r for r in runs if r.kind == "online" and r.curves and r.curves.episode_steps]
    if not online:
        return None
    fig, ax = _new_figure(
        f"{exp_id}: online learning curves ({_envs(online)})",
        f"training episodes, trailing mean over {smooth_window} episode(s); "
        "line: mean across seeds, band: ±1 std across seeds")
    for s in group_series(online):
        curves = [collapse_duplicates(r.curves.episode_steps,
                                      trailing_mean(r.curves.episode_returns, smooth_window))
                  for r in s.runs]
        band = seed_band(curves)
        st = s.style
        ax.plot(band.x, band.mean, color=st.color, linestyle=st.linestyle, linewidth=1.8,
                marker="o" if band.x.size == 1 else None,  # a lone point stays visible
                label=f"{s.label}, {_seeds(len(s.runs))}")
        several = np.isfinite(band.std)
        if several.any():
            ax.fill_between(band.x, band.mean - band.std, band.mean + band.std, where=several,
                            color=st.color, alpha=0.2, linewidth=0)
    ax.set_ylabel("episodic return (training)")
    _finish(fig, ax)
    return fig


def plot_interval_comparison(runs: Sequence[RunRecord], exp_id: str) -> Figure | None:
    """Evaluated return at each interval mark: the online methods' evaluations and each offline
    method trained on the first x transitions of an online run, mean with +-1 std error bars
    (across episodes for one seed, across seeds for several). None when nothing was evaluated."""
    evaluated = [r for r in runs if r.evaluations]
    if not evaluated:
        return None
    fig, ax = _new_figure(
        f"{exp_id}: online vs offline on the same experience ({_envs(evaluated)})",
        "evaluation return after x transitions (offline: trained on the first x transitions of the "
        "online run)\nerror bars: ±1 std across evaluation episodes (1 seed) or across seeds")
    series = group_series(evaluated)
    marks: set[float] = set()
    for i, s in enumerate(series):
        pts = return_points([r.evaluations for r in s.runs])
        marks.update(pts.x.tolist())
        shift = (i - (len(series) - 1) / 2) * ERRORBAR_SPREAD_POINTS
        st = s.style
        c = ax.errorbar(pts.x, pts.y, yerr=pts.err, color=st.color, marker=st.marker,
                        linestyle=st.linestyle, capsize=3, markersize=5, linewidth=1.5,
                        label=f"{s.label}, {_seeds(len(s.runs))}")
        _shift(fig, ax, c, shift)
    _ticks_on_marks(ax, marks)
    ax.set_ylabel("episodic return (evaluation)")
    _finish(fig, ax)
    return fig


def plot_blend_weights(runs: Sequence[RunRecord], exp_id: str) -> Figure | None:
    """The logic actor's share in the BlendRL blend: over online training (``training_log.pkl``
    ``blend``, mean across seeds with a +-1 std band) and at each evaluation (``results.json``
    ``logic_weight``, online and offline, error bar = std across seeds). None without BlendRL data."""
    blend = [r for r in runs if r.is_blendrl]
    training = [r for r in blend if r.kind == "online" and r.curves and r.curves.blend_steps]
    evaluated = [r for r in blend if any(e.logic_weight is not None for e in r.evaluations)]
    if not training and not evaluated:
        return None
    fig, ax = _new_figure(
        f"{exp_id}: share of the logic actor in the BlendRL blend ({_envs(training + evaluated)})",
        "lines: online training updates (mean across seeds, band ±1 std across seeds)\n"
        "markers: evaluations (error bars: ±1 std across seeds)")
    for s in group_series(training):
        band = seed_band([collapse_duplicates(r.curves.blend_steps, r.curves.logic_weight_mean)
                          for r in s.runs])
        st = s.style
        ax.plot(band.x, band.mean, color=st.color, linestyle=st.linestyle, linewidth=1.8,
                marker="o" if band.x.size == 1 else None,
                label=f"{s.label} training, {_seeds(len(s.runs))}")
        several = np.isfinite(band.std)
        if several.any():
            ax.fill_between(band.x, band.mean - band.std, band.mean + band.std, where=several,
                            color=st.color, alpha=0.2, linewidth=0)
    series = group_series(evaluated)
    marks: set[float] = set()
    for i, s in enumerate(series):
        pts = logic_weight_points([r.evaluations for r in s.runs])
        marks.update(pts.x.tolist())
        shift = (i - (len(series) - 1) / 2) * ERRORBAR_SPREAD_POINTS
        st = s.style
        c = ax.errorbar(pts.x, pts.y, yerr=pts.err, color=st.color, marker=st.marker,
                        linestyle="none", capsize=3, markersize=6, markeredgecolor="black",
                        markeredgewidth=0.6, label=f"{s.label} evaluation, {_seeds(len(s.runs))}")
        _shift(fig, ax, c, shift)
    _ticks_on_marks(ax, marks)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("logic weight $w_l$ (share of the logic actor)")
    _finish(fig, ax)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> None:
    """Write ``fig`` as PNG atomically (temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
