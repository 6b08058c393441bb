"""The numbers behind the curves: smoothing, averaging seeds on a common x grid, and confidence
bands across seeds. Pure numpy (the bootstrap is :mod:`blendrl.plotting.stats`), no drawing.

Conventions (written in the plots' subtitles too):

* smoothing is a trailing moving average over the last ``window`` training episodes (fewer at the
  very start);
* a curve across seeds is their mean at each grid point, with a band: the bootstrap CI of that
  mean across the seeds, at each grid point covered by at least two seeds; a seed contributes only
  inside the x range it has reached (no extrapolation), so runs still in progress do not drag the
  mean.

The interval evaluations' estimates are :mod:`blendrl.plotting.summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from blendrl.plotting.collect import Evaluation
from blendrl.plotting.stats import BootstrapSettings, interval_estimates

GRID_POINTS = 200
"""Points of the common x grid onto which the seeds' curves are interpolated."""


@dataclass(frozen=True)
class Band:
    """A curve averaged across seeds on a common grid."""

    x: np.ndarray
    mean: np.ndarray
    """mean across the seeds covering each x (NaN where none does)"""
    std: np.ndarray
    """std across seeds (ddof 0) where at least two seeds cover x, NaN elsewhere"""
    count: np.ndarray
    """how many seeds cover each x"""
    values: np.ndarray
    """``[seeds, x]`` each seed's interpolated curve, NaN outside its own x range"""


@dataclass(frozen=True)
class Points:
    """Points with (possibly asymmetric) interval bounds, at sorted x values."""

    x: np.ndarray
    y: np.ndarray
    low: np.ndarray
    """lower bound of each point's interval (= y where there is none)"""
    high: np.ndarray
    count: np.ndarray
    """how many runs contributed to each point"""


def trailing_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of the last ``window`` values up to and including each position (fewer at the start).

    >>> trailing_mean([1, 2, 3, 4], 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1, got {window}")
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def collapse_duplicates(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sort by x and average the y values that share an x (parallel envs end episodes together)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.size == 0:
        return xa, ya
    ux, inverse = np.unique(xa, return_inverse=True)
    sums = np.bincount(inverse, weights=ya, minlength=ux.size)
    counts = np.bincount(inverse, minlength=ux.size)
    return ux, sums / counts


def common_grid(curves: Sequence[tuple[np.ndarray, np.ndarray]], n_points: int = GRID_POINTS) -> np.ndarray:
    """Evenly spaced x from the smallest to the largest x of all curves (one point if they agree)."""
    xs = [c[0] for c in curves if c[0].size]
    if not xs:
        return np.zeros(0)
    lo, hi = min(float(x[0]) for x in xs), max(float(x[-1]) for x in xs)
    return np.array([lo]) if hi == lo else np.linspace(lo, hi, n_points)


def seed_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], n_points: int = GRID_POINTS) -> Band:
    """Average curves (each ``(x sorted unique, y)``, one per seed) on a common grid.

    Each curve is linearly interpolated inside its own x range only."""
    grid = common_grid(curves, n_points)
    stack = np.full((len(curves), grid.size), np.nan)
    for i, (x, y) in enumerate(curves):
        if x.size == 0:
            continue
        inside = (grid >= x[0]) & (grid <= x[-1])
        stack[i, inside] = np.interp(grid[inside], x, y)
    covered = np.isfinite(stack)
    count = covered.sum(axis=0)
    filled = np.where(covered, stack, 0.0)
    mean = np.full(grid.size, np.nan)
    has = count > 0
    mean[has] = filled[:, has].sum(axis=0) / count[has]
    std = np.full(grid.size, np.nan)
    several = count > 1
    dev = np.where(covered, stack - mean, 0.0)
    std[several] = np.sqrt((dev[:, several] ** 2).sum(axis=0) / count[several])
    return Band(x=grid, mean=mean, std=std, count=count, values=stack)


def band_interval(band: Band, settings: BootstrapSettings, key: str) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap CI of ``band.mean`` across the seeds covering each x: ``(low, high)``, NaN
    where fewer than two seeds cover x."""
    low = np.full(band.x.size, np.nan)
    high = np.full(band.x.size, np.nan)
    cols = np.flatnonzero(band.count > 1)
    samples = [band.values[np.isfinite(band.values[:, j]), j] for j in cols]
    for j, iv in zip(cols, interval_estimates(samples, "mean", settings, key)):
        low[j], high[j] = iv.low, iv.high
    return low, high


def _by_x(values_per_run: Sequence[dict[int, float]]) -> list[tuple[int, list[float]]]:
    xs = sorted({x for run in values_per_run for x in run})
    return [(x, [run[x] for run in values_per_run if x in run]) for x in xs]


def logic_weight_points(evaluations_per_run: Sequence[Sequence[Evaluation]],
                        settings: BootstrapSettings, key: str) -> Points:
    """The evaluations' ``logic_weight`` per ``data_limit``: mean across runs, bounds = the
    bootstrap CI across runs (none, i.e. low = high = y, for a single run)."""
    per_run = [{e.data_limit: e.logic_weight for e in evs if e.logic_weight is not None}
               for evs in evaluations_per_run]
    rows = _by_x(per_run)
    intervals = interval_estimates([r[1] for r in rows], "mean", settings, key)
    return Points(x=np.array([r[0] for r in rows], dtype=np.float64),
                  y=np.array([iv.estimate for iv in intervals]),
                  low=np.array([iv.low for iv in intervals]),
                  high=np.array([iv.high for iv in intervals]),
                  count=np.array([len(r[1]) for r in rows], dtype=np.int64))
