"""The interval estimates (blendrl.plotting.stats, blendrl.plotting.summary) against hand
computations on constructed results.

Hand rules for the percentile bootstrap of a mean over n values: a resample is all copies of one
value with probability (1/n)^n, so for n <= 3 (1/27 = 3.7% > 2.5%) the 95% interval runs exactly
from the smallest to the largest value; a sample whose values all lie above 0 has every resampled
mean above 0, so its interval excludes 0 whatever the seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from blendrl.plotting.collect import collect_runs
from blendrl.plotting.stats import (BootstrapSettings, Interval, bootstrap_matrix, column_iqm,
                                    interval_estimates)
from blendrl.plotting.summary import IntervalBatch, summarize
from helpers_runs import evaluation, timing, write_run

SETTINGS = BootstrapSettings(reps=2000, seed=0)


def returns_with_mean(mean: float, n: int = 4) -> list[float]:
    """n episode returns spread around ``mean`` (their mean is exactly ``mean``)."""
    spread = np.linspace(-1.5, 1.5, n)
    return [float(mean + s) for s in spread]


# --------------------------------------------------------------------------- the bootstrap

def test_small_samples_by_hand():
    got = interval_estimates([[10, 20, 30], [1, 5], [7], []], "mean", SETTINGS, "k")
    assert got == [Interval(20.0, 10.0, 30.0, 3), Interval(3.0, 1.0, 5.0, 2),
                   Interval(7.0, 7.0, 7.0, 1), None]
    # all values above 0: every resampled mean is too
    (iv,) = interval_estimates([[3, 4, 5, 6, 7]], "mean", SETTINGS, "k")
    assert iv.estimate == 5.0 and 3.0 <= iv.low and iv.high <= 7.0 and iv.excludes_zero
    assert iv.sign == 1


def test_iqm_of_a_known_list():
    values = [7, 1, 100, 3, 5, 2, 6, 4]
    # the middle 50% of 1..7, 100: (3 + 4 + 5 + 6) / 4
    assert column_iqm(np.array(values, dtype=float)[:, None]).tolist() == [4.5]
    assert metrics.aggregate_iqm(np.array(values, dtype=float)) == 4.5
    (iqm,) = interval_estimates([values], "iqm", SETTINGS, "k")
    (mean,) = interval_estimates([values], "mean", SETTINGS, "k")
    assert iqm.estimate == 4.5 and mean.estimate == 16.0
    assert iqm.low <= 4.5 <= iqm.high and mean.low <= 16.0 <= mean.high
    # the same cut as rliable's IQM for every sample size
    rng = np.random.default_rng(3)
    for n in range(2, 12):
        x = rng.normal(size=(n, 3))
        np.testing.assert_allclose(column_iqm(x), [metrics.aggregate_iqm(x[:, j]) for j in range(3)])


def test_same_intervals_as_rliables_own_bootstrap():
    """Our seeded subclass gives rliable's percentile intervals (up to resampling noise)."""
    x = np.random.default_rng(7).normal(50.0, 10.0, size=12)
    ours = bootstrap_matrix(x[:, None], "mean", BootstrapSettings(reps=20000), "k")
    state = np.random.get_state()
    np.random.seed(0)  # rliable 1.2.0 resamples with numpy's global generator
    try:
        _, ci = rly.get_interval_estimates({"x": x[:, None]}, lambda s: np.mean(s, axis=0),
                                           reps=20000)
    finally:
        np.random.set_state(state)
    assert ours[0][0] == pytest.approx(x.mean())
    se = x.std() / np.sqrt(x.size)
    assert abs(ours[1][0] - ci["x"][0][0]) < 0.1 * se and abs(ours[2][0] - ci["x"][1][0]) < 0.1 * se


def test_fixed_seed_reproduces_and_leaves_numpy_alone():
    x = np.random.default_rng(1).normal(size=(10, 4))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = bootstrap_matrix(x, "mean", SETTINGS, "k")
    assert np.array_equal(np.random.get_state()[1], before)  # the global generator is untouched
    b = bootstrap_matrix(x, "mean", SETTINGS, "k")
    c = bootstrap_matrix(x, "mean", BootstrapSettings(reps=2000, seed=1), "k")
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.array_equal(a[1], c[1])  # another seed, other resamples
    np.testing.assert_allclose(a[0], x.mean(axis=0))
    assert np.all(a[1] < a[0]) and np.all(a[0] < a[2])


def test_with_one_key_per_sample_an_interval_ignores_its_companions():
    rng = np.random.default_rng(2)
    a, b, c = rng.normal(size=6), rng.normal(size=6), rng.normal(size=3)
    (alone,) = interval_estimates([a], "mean", SETTINGS, ["a"])
    together = interval_estimates([b, c, a], "mean", SETTINGS, ["b", "c", "a"])
    assert together[2] == alone and together[0] != alone
    assert together[0] == interval_estimates([b], "mean", SETTINGS, ["b"])[0]
    assert interval_estimates([a], "mean", SETTINGS, ["other key"])[0] != alone
    with pytest.raises(ValueError, match="2 keys for 3 samples"):
        interval_estimates([a, b, c], "mean", SETTINGS, ["a", "b"])


def test_a_batch_gives_each_sample_its_own_interval():
    rng = np.random.default_rng(4)
    samples = [rng.normal(size=n) for n in (5, 5, 3, 8)]
    batch = IntervalBatch(SETTINGS)
    got = [batch.add(s, f"k{i}") for i, s in enumerate(samples)]
    iqm = batch.add(samples[3], "k3", "iqm")
    assert [g() for g in got] == [interval_estimates([s], "mean", SETTINGS, [f"k{i}"])[0]
                                  for i, s in enumerate(samples)]
    assert iqm() == interval_estimates([samples[3]], "iqm", SETTINGS, ["k3"])[0]
    with pytest.raises(RuntimeError, match="resolved"):
        batch.add(samples[0], "late")


@pytest.mark.parametrize("kwargs,problem", [
    ({"reps": 0}, "reps"), ({"seed": -1}, "seed"), ({"confidence": 1.0}, "confidence"),
    ({"confidence": float("nan")}, "confidence")])
def test_bad_settings(kwargs, problem):
    with pytest.raises(ValueError, match=problem):
        BootstrapSettings(**kwargs)
    with pytest.raises(ValueError, match="statistic"):
        interval_estimates([[1, 2]], "median", SETTINGS, "k")


# --------------------------------------------------------------------------- per series and mark

def online(runs: Path, seed: int, means: dict[int, list[float]] | dict[int, float], *,
           exp: str = "e", method: str = "ppo", finished: bool = True) -> None:
    results = [evaluation(i + 1, mark, r if isinstance(r, list) else returns_with_mean(r), 1.0, 1.0)
               for i, (mark, r) in enumerate(sorted(means.items()))]
    write_run(runs, f"{exp}_{method}_s{seed}", exp_id=exp, method=method, seed=seed, results=results,
              timing=timing(1.0, finished))


def offline(runs: Path, seed: int, means: dict[int, list[float]] | dict[int, float], *,
            exp: str = "e", method: str = "iql", source: str = "ppo", finished: bool = True) -> None:
    results = [evaluation(i + 1, mark, r if isinstance(r, list) else returns_with_mean(r), 1.0, 1.0)
               for i, (mark, r) in enumerate(sorted(means.items()))]
    write_run(runs, f"{exp}_{method}_on_{source}_s{seed}", exp_id=exp, method=method, seed=seed,
              source=source, results=results, timing=timing(1.0, finished))


def summary_of(runs: Path, settings: BootstrapSettings = SETTINGS):
    return summarize(collect_runs(runs, "e").runs, settings)


def test_estimate_is_the_mean_of_the_seeds_means(tmp_path):
    runs = tmp_path / "runs"
    online(runs, 0, {100: [10, 20]})             # mean 15
    online(runs, 1, {100: [30]})                 # mean 30
    online(runs, 2, {100: [0, 0, 0, 60]})        # mean 15; pooled episodes would give 120 / 7
    (ss,) = summary_of(runs).series
    (m,) = ss.marks
    assert (m.mark, m.seeds, m.episodes, m.ci_over) == (100, (0, 1, 2), 7, "seeds")
    assert m.estimate == 20.0 and (m.ci_low, m.ci_high) == (15.0, 30.0)
    assert m.iqm is None  # fewer than 4 seeds


def test_iqm_across_four_seeds_or_more(tmp_path):
    runs = tmp_path / "runs"
    for seed, mean in enumerate([7, 1, 100, 3, 5, 2, 6, 4]):
        online(runs, seed, {100: mean})
    (m,) = summary_of(runs).series[0].marks
    assert m.estimate == 16.0 and m.iqm.estimate == 4.5 and m.iqm.n == 8


def test_one_seed_ci_is_across_its_episodes(tmp_path):
    runs = tmp_path / "runs"
    online(runs, 0, {100: [2, 4, 9]})
    (m,) = summary_of(runs).series[0].marks
    assert (m.seeds, m.episodes, m.ci_over, m.estimate, m.ci_low, m.ci_high) == \
        ((0,), 3, "episodes", 5.0, 2.0, 9.0)
    # only mean_return recorded (no per-episode returns): the estimate, without a CI
    d = runs / "e_ppo_s0" / "results.json"
    d.write_text('[{"interval": 1, "data_limit": 100, "mean_return": 5.0, "std_return": 1.0}]')
    (m,) = summary_of(runs).series[0].marks
    assert m.estimate == 5.0 and not m.has_ci


# --------------------------------------------------------------------------- paired differences

def test_paired_difference_excludes_zero_where_unpaired_intervals_overlap(tmp_path):
    runs = tmp_path / "runs"
    online_means = [0, 100, 200, 300, 400]      # seeds differ a lot ...
    deltas = [3, 4, 5, 6, 7]                    # ... offline is a little better on every seed
    for seed, (m, d) in enumerate(zip(online_means, deltas)):
        online(runs, seed, {100: m})
        offline(runs, seed, {100: m + d})
    s = summary_of(runs)
    on, off = (ss.marks[0] for ss in s.series)
    assert off.ci_low < on.ci_high  # the two intervals alone overlap: no conclusion
    (pair,) = s.pairs
    (d,) = pair.marks
    assert d.seeds == (0, 1, 2, 3, 4) and d.ci_over == "seeds"
    assert d.difference == 5.0 and 3.0 <= d.ci_low and d.ci_high <= 7.0
    assert d.verdict == "above" and (d.offline, d.online) == (205.0, 200.0)
    assert pair.online_label == "PPO (online)"


def test_paired_difference_that_must_not_exclude_zero(tmp_path):
    runs = tmp_path / "runs"
    for seed, d in enumerate([-5, 5, -3, 3, 0]):
        online(runs, seed, {100: 50.0})
        offline(runs, seed, {100: 50.0 + d})
    (d,) = summary_of(runs).pairs[0].marks
    assert d.difference == 0.0 and d.ci_low < 0.0 < d.ci_high and d.verdict == "inconclusive"
    # below: every seed worse
    runs2 = tmp_path / "runs2"
    for seed, delta in enumerate([-2, -1, -3]):
        online(runs2, seed, {100: 10.0})
        offline(runs2, seed, {100: 10.0 + delta})
    (d,) = summary_of(runs2).pairs[0].marks
    assert (d.difference, d.ci_low, d.ci_high, d.verdict) == (-2.0, -3.0, -1.0, "below")


def test_one_seed_pairs_episode_j_with_episode_j(tmp_path):
    runs = tmp_path / "runs"
    online(runs, 0, {100: [9, 19, 29]})
    offline(runs, 0, {100: [10, 20, 30]})
    (d,) = summary_of(runs).pairs[0].marks
    # 3 paired episodes of one seed: the interval is computed, but no verdict from so few
    assert (d.ci_over, d.episodes, d.difference, d.ci_low, d.ci_high, d.verdict) == \
        ("episodes", 3, 1.0, 1.0, 1.0, "too few episodes")
    runs10 = tmp_path / "runs10"
    online(runs10, 0, {100: [10 * j + 9 for j in range(10)]})
    offline(runs10, 0, {100: [10 * j + 10 for j in range(10)]})
    (d,) = summary_of(runs10).pairs[0].marks
    assert (d.episodes, d.difference, d.ci_low, d.ci_high, d.verdict) == (10, 1.0, 1.0, 1.0, "above")
    # the same returns, online episodes in another order: the pairs are -19, 1, 21
    runs2 = tmp_path / "runs2"
    online(runs2, 0, {100: [29, 19, 9]})
    offline(runs2, 0, {100: [10, 20, 30]})
    (d,) = summary_of(runs2).pairs[0].marks
    assert (d.difference, d.ci_low, d.ci_high, d.verdict) == (1.0, -19.0, 21.0, "too few episodes")
    # more online episodes than offline ones: the first 2 pair (same starts)
    runs3 = tmp_path / "runs3"
    online(runs3, 0, {100: [0, 0, 50, 50, 50]})
    offline(runs3, 0, {100: [4, 6]})
    (d,) = summary_of(runs3).pairs[0].marks
    assert (d.episodes, d.difference, d.ci_low, d.ci_high, d.online) == (2, 5.0, 4.0, 6.0, 0.0)


def test_pairs_by_the_dataset_run_id_and_reports_the_unpaired(tmp_path):
    runs = tmp_path / "runs"
    online(runs, 0, {100: [10, 10]})
    online(runs, 1, {100: [20, 20]})
    # seed 1's offline run trained on seed 0's data: it pairs with seed 0's online run
    write_run(runs, "e_iql_on_ppo_s1", exp_id="e", method="iql", seed=1, source="ppo",
              source_run_id="e_ppo_s0", results=[evaluation(1, 100, [13, 13], 1.0, 1.0)])
    write_run(runs, "e_iql_on_ppo_s2", exp_id="e", method="iql", seed=2, source="ppo",
              source_run_id="elsewhere_ppo_s2", results=[evaluation(1, 100, [1, 1], 1.0, 1.0)])
    s = summary_of(runs)
    (d,) = s.pairs[0].marks
    assert (d.seeds, d.difference) == ((1,), 3.0)
    assert ("IQL on PPO data: seed 2 (e_iql_on_ppo_s2) is not paired: its dataset's run "
            "elsewhere_ppo_s2 is not a run of this experiment") in s.missing
    assert "PPO (online): seed 2 has no run" in s.missing
    assert "IQL on PPO data: seed 0 has no run" in s.missing


def test_partial_experiment_estimates_over_what_is_there(tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1, 2):
        marks = {100: 10.0 * seed, 200: 20.0 + seed}
        if seed == 2:
            marks.pop(200)  # seed 2 still running
        online(runs, seed, marks, finished=seed != 2)
    offline(runs, 0, {100: 1.0, 200: 30.0})
    s = summary_of(runs)
    on = s.series[0].marks
    assert [(m.mark, m.seeds, m.estimate) for m in on] == [(100, (0, 1, 2), 10.0), (200, (0, 1), 20.5)]
    assert [(d.mark, d.seeds, d.ci_over) for d in s.pairs[0].marks] == \
        [(100, (0,), "episodes"), (200, (0,), "episodes")]
    assert s.missing == [
        "PPO (online): seed 2 (e_ppo_s2) has no evaluation at 1 of 2 marks (200) "
        "(unfinished: still running or stopped)",
        "IQL on PPO data: seed 1 has no run", "IQL on PPO data: seed 2 has no run"]
    # an interval does not change when other series or marks come in
    before = s.series[0].marks[0]
    offline(runs, 1, {100: 5.0, 200: 6.0, 300: 7.0})
    assert summary_of(runs).series[0].marks[0] == before
