"""Interval estimates with rliable (Agarwal et al., "Deep RL at the Edge of the Statistical
Precipice", NeurIPS 2021): point estimates and percentile bootstrap confidence intervals.

The bootstrap is rliable's :class:`~rliable.library.StratifiedBootstrap` with the percentile
method, exactly as ``rliable.library.get_interval_estimates`` runs it, on a score matrix
``[samples, columns]``: every column (an evaluation mark, a grid point of a curve) is resampled
on its own, so one bootstrap gives the interval of every column at once. Two differences from
``get_interval_estimates``, both about reproducibility:

* rliable 1.2.0 draws its resampling indices from numpy's *global* generator and ignores the
  ``random_state`` it is given; the subclass used here (:func:`seeded_stratified_bootstrap`)
  draws them from the bootstrap's own generator instead, so a fixed ``BootstrapSettings.seed``
  gives the same intervals in any process, whatever else used ``np.random``, and nothing global
  is touched;
* the generators derive from the seed and a key naming what is estimated (a series and mark, a
  statistic): with one key per column, an interval depends only on its own values, its key and
  the settings -- not on which other intervals are computed with it or before it.

Statistics: ``mean`` and ``iqm`` (the interquartile mean, rliable's ``aggregate_iqm``: the mean
of the middle 50 %, ``scipy.stats.trim_mean(x, 0.25)``), per column. A sample of one value has a
degenerate interval (low = high = the value); an empty one has none.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

STATISTICS = ("mean", "iqm")
INDEX_CHUNK = 256
"""Resamples whose indices a column's generator draws in one call."""
IQM_MIN_SEEDS = 4
"""The IQM is reported where at least this many seeds contribute (below it, it is the mean or
nearly so, and trims little)."""


@dataclass(frozen=True)
class BootstrapSettings:
    """How the confidence intervals are computed."""

    reps: int = 2000
    """bootstrap resamples per interval"""
    seed: int = 0
    """seed of the resampling (the same seed and data give the same intervals)"""
    confidence: float = 0.95
    """coverage of each interval"""

    def __post_init__(self) -> None:
        if isinstance(self.reps, bool) or not isinstance(self.reps, int) or self.reps < 1:
            raise ValueError(f"bootstrap reps must be a positive integer, got {self.reps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"bootstrap seed must be a non-negative integer, got {self.seed!r}")
        if not 0.0 < float(self.confidence) < 1.0:
            raise ValueError(f"confidence must lie strictly between 0 and 1, got {self.confidence!r}")

    @property
    def percent(self) -> str:
        """``"95%"``"""
        return f"{100 * self.confidence:g}%"


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval over ``n`` values."""

    estimate: float
    low: float
    high: float
    n: int
    """how many values the estimate is over (seeds, or episodes)"""

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    @property
    def sign(self) -> int:
        """+1: the interval lies above 0; -1: below; 0: it contains 0."""
        return 1 if self.low > 0.0 else (-1 if self.high < 0.0 else 0)


@functools.cache
def seeded_stratified_bootstrap() -> type:
    """rliable's ``StratifiedBootstrap`` drawing its indices from its own generators instead of
    numpy's global one: from ``column_generators`` (one per column) when set, else from the
    bootstrap's generator (``seed=``). Built on first use: importing rliable (arch, statsmodels)
    takes seconds, which a bad command line or ``--help`` should not wait for."""
    from rliable import library as rly

    class SeededStratifiedBootstrap(rly.StratifiedBootstrap):
        column_generators: Sequence[np.random.Generator] | None = None
        _buffer: list[np.ndarray] | None = None

        def update_indices(self) -> tuple[np.ndarray, ...]:
            n = self._num_items
            if self.column_generators is None:
                indices = self.generator.integers(n, size=self._args_shape)
            else:  # each column's generator draws the indices of INDEX_CHUNK resamples at once
                if not self._buffer:
                    draws = [g.integers(n, size=(INDEX_CHUNK, n)) for g in self.column_generators]
                    self._buffer = list(np.stack(draws, axis=2)[::-1])
                indices = self._buffer.pop()
            return (indices, *self._strata_indices)

    return SeededStratifiedBootstrap


def column_mean(scores: np.ndarray) -> np.ndarray:
    return np.mean(scores, axis=0)


def column_iqm(scores: np.ndarray) -> np.ndarray:
    """Per column, rliable's IQM (``metrics.aggregate_iqm`` = ``scipy.stats.trim_mean(x, 0.25)``):
    the mean of the sorted values from index ``int(n / 4)`` up to ``n - int(n / 4)``. The same
    cut as scipy's, written out because scipy's call costs more than the arithmetic here."""
    n = scores.shape[0]
    cut = int(0.25 * n)
    return np.mean(np.sort(scores, axis=0)[cut:n - cut], axis=0)


STATISTIC_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mean": column_mean, "iqm": column_iqm}


def _generator(settings: BootstrapSettings, key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([settings.seed, zlib.crc32(key.encode())]))


def bootstrap_matrix(scores: np.ndarray, statistic: str, settings: BootstrapSettings,
                     keys: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimates and interval bounds of each column of ``scores`` ``[n, columns]``.

    ``keys``: one text for the whole matrix (one generator resamples every column), or one per
    column (each column resampled by its own generator, so its interval depends only on its
    values, its key and ``settings``). Returns ``(estimate, low, high)``, each ``[columns]``;
    ``n`` must be at least 2."""
    func = STATISTIC_FUNCTIONS[statistic]
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 2:
        raise ValueError(f"bootstrap needs a [n >= 2, columns] matrix, got shape {scores.shape}")
    n = scores.shape[0]
    if isinstance(keys, str):
        bs = seeded_stratified_bootstrap()(scores, seed=_generator(settings, f"{keys}|{statistic}|{n}"))
    else:
        if len(keys) != scores.shape[1]:
            raise ValueError(f"{len(keys)} keys for {scores.shape[1]} columns")
        bs = seeded_stratified_bootstrap()(scores, seed=_generator(settings, statistic))
        bs.column_generators = [_generator(settings, f"{k}|{statistic}|{n}") for k in keys]
    ci = bs.conf_int(func, reps=settings.reps, size=settings.confidence, method="percentile")
    return func(scores), ci[0], ci[1]


def interval_estimates(samples: Sequence[Sequence[float]], statistic: str,
                       settings: BootstrapSettings,
                       keys: str | Sequence[str]) -> list[Interval | None]:
    """One :class:`Interval` per sample (None for an empty one).

    Samples of the same size are bootstrapped together, each as its own column; ``keys`` as in
    :func:`bootstrap_matrix` (one text, or one per sample)."""
    if statistic not in STATISTIC_FUNCTIONS:
        raise ValueError(f"unknown statistic {statistic!r} (known: {', '.join(STATISTICS)})")
    if not isinstance(keys, str) and len(keys) != len(samples):
        raise ValueError(f"{len(keys)} keys for {len(samples)} samples")
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1) for s in samples]
    out: list[Interval | None] = [None] * len(arrays)
    by_size: dict[int, list[int]] = {}
    for i, a in enumerate(arrays):
        if a.size == 1:
            v = float(a[0])
            out[i] = Interval(v, v, v, 1)
        elif a.size > 1:
            by_size.setdefault(a.size, []).append(i)
    for n, idx in by_size.items():
        group_keys = keys if isinstance(keys, str) else [keys[i] for i in idx]
        est, low, high = bootstrap_matrix(np.stack([arrays[i] for i in idx], axis=1), statistic,
                                          settings, group_keys)
        for j, i in enumerate(idx):
            out[i] = Interval(float(est[j]), float(low[j]), float(high[j]), n)
    return out
