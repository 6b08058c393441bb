"""plot_results.py and blendrl.plotting: runs written by hand in tmp_path (docs/FORMATS.md), the
plotted data read back from the Figure objects and compared with hand-computed values, the timing
table's sums, exp1/exp10 kept apart, partial and empty experiments, the CLI as a real process.

Hand-computed intervals: the percentile bootstrap CI of the mean of two values a < b is exactly
[a, b] (a resample is all a with probability 1/4, far above 2.5%), and of n values it reaches the
smallest and largest whenever (1/n)^n > 2.5% (n <= 3)."""

from __future__ import annotations

import csv
import io
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from blendrl.plotting.collect import collect_runs
from blendrl.plotting.curves import collapse_duplicates, seed_band, trailing_mean
from blendrl.plotting.figures import (plot_blend_weights, plot_interval_comparison,
                                      plot_online_returns)
from blendrl.plotting.stats import BootstrapSettings
from blendrl.plotting.summary import summarize
from blendrl.plotting.report import EXIT_NO_RUNS, EXIT_OK, EXIT_USAGE, make_plots
from helpers_runs import evaluation, timing, training_log, write_run

ROOT = Path(__file__).resolve().parents[1]
PNGS = ("online_returns.png", "interval_comparison.png", "paired_differences.png",
        "blend_weights.png")
TABLES = ("summary.csv", "paired_differences.csv", "report.md", "timing.md", "timing.csv")


@pytest.fixture
def exp1(tmp_path: Path) -> Path:
    """Experiment exp1: PPO and BlendRL-PPO online (two seeds each; BlendRL seed 1 still early),
    IQL on both datasets (two seeds on PPO data, one on BlendRL-PPO data), BlendRL-IQL on
    BlendRL-PPO data (one seed). Every number is chosen so the expected plot values are easy."""
    runs = tmp_path / "runs"
    write_run(runs, "exp1_ppo_s0", exp_id="exp1", method="ppo", seed=0,
              results=[evaluation(1, 100, [10, 20, 30], 1.5, 0.5),
                       evaluation(2, 200, [40, 60], 2.25, 0.25)],
              timing=timing(10.0), log=training_log([100, 200, 300, 400], [10, 20, 30, 40]))
    write_run(runs, "exp1_ppo_s1", exp_id="exp1", method="ppo", seed=1,
              results=[evaluation(1, 100, [30, 30], 1.0, 1.0),
                       evaluation(2, 200, [70, 70], 1.0, 1.0)],
              timing=timing(7.5), log=training_log([100, 200, 300, 400], [30, 40, 50, 60]))
    write_run(runs, "exp1_blendrl_ppo_s0", exp_id="exp1", method="blendrl_ppo", seed=0,
              results=[evaluation(1, 100, [5, 5], 3.0, 1.0, logic_weight=0.3),
                       evaluation(2, 200, [9, 9], 3.0, 1.0, logic_weight=0.5)],
              timing=timing(9.0), log=training_log([100, 200, 300, 400], [100, 100, 100, 100],
                                                   blend=[(100, 0.2), (400, 0.8)]))
    write_run(runs, "exp1_blendrl_ppo_s1", exp_id="exp1", method="blendrl_ppo", seed=1,
              results=[evaluation(1, 100, [7, 7], 3.0, 1.0, logic_weight=0.5)],
              timing=timing(4.0, finished=False),
              log=training_log([100, 200], [200, 200], blend=[(100, 0.4), (400, 0.4)]))
    for seed, (r1, r2) in enumerate((([1, 1], [2, 2]), ([3, 3], [6, 6]))):
        write_run(runs, f"exp1_iql_on_ppo_s{seed}", exp_id="exp1", method="iql", seed=seed,
                  source="ppo", results=[evaluation(1, 100, r1, 4.0, 0.5),
                                         evaluation(2, 200, r2, 8.0, 0.5)], timing=timing(14.0))
    write_run(runs, "exp1_iql_on_blendrl_ppo_s0", exp_id="exp1", method="iql", seed=0,
              source="blendrl_ppo", results=[evaluation(1, 100, [0, 10], 4.0, 0.5),
                                             evaluation(2, 200, [4, 8], 4.0, 0.5)],
              timing=timing(10.0))
    write_run(runs, "exp1_blendrl_iql_on_blendrl_ppo_s0", exp_id="exp1", method="blendrl_iql",
              seed=0, source="blendrl_ppo",
              results=[evaluation(1, 100, [1, 1], 4.0, 0.5, logic_weight=0.25)], timing=timing(6.0))
    return runs


def errorbars(fig) -> dict[str, ErrorbarContainer]:
    ax = fig.axes[0]
    return {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}


def bar_bounds(c: ErrorbarContainer) -> list[tuple[float, float]]:
    """(low, high) of each vertical error bar, read from the bar segments."""
    (bars,) = c.lines[2]
    return [(float(min(seg[:, 1])), float(max(seg[:, 1]))) for seg in bars.get_segments()]


def lines(fig) -> dict[str, object]:
    return {ln.get_label(): ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}


def band_vertices(fig) -> list[np.ndarray]:
    return [p.vertices for c in fig.axes[0].collections if isinstance(c, PolyCollection)
            for p in c.get_paths()]


# --------------------------------------------------------------------------- the numbers

def test_trailing_mean_and_duplicates_by_hand():
    assert trailing_mean([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert trailing_mean([4, 8, 6], 10).tolist() == [4.0, 6.0, 6.0]
    assert trailing_mean([3, 5], 1).tolist() == [3.0, 5.0]
    with pytest.raises(ValueError, match="window"):
        trailing_mean([1.0], 0)
    # two parallel envs ending episodes at the same step: averaged, and sorted by step
    x, y = collapse_duplicates([200, 100, 100], [7.0, 1.0, 3.0])
    assert x.tolist() == [100.0, 200.0] and y.tolist() == [2.0, 7.0]


def test_seed_band_never_extrapolates_a_shorter_seed():
    long = (np.array([0.0, 10.0]), np.array([0.0, 10.0]))
    short = (np.array([0.0, 5.0]), np.array([10.0, 10.0]))
    band = seed_band([long, short], n_points=11)
    assert band.x.tolist() == list(range(11))
    # x <= 5: both seeds -> mean of x and 10, std |x - 10| / 2; x > 5: the long seed alone
    expected_mean = [(x + 10) / 2 if x <= 5 else x for x in range(11)]
    np.testing.assert_allclose(band.mean, expected_mean)
    np.testing.assert_allclose(band.std[:6], [abs(x - 10) / 2 for x in range(6)])
    assert np.isnan(band.std[6:]).all()
    assert band.count.tolist() == [2] * 6 + [1] * 5


# --------------------------------------------------------------------------- the figures

def test_online_returns_mean_band_and_seed_counts(exp1):
    col = collect_runs(exp1, "exp1")
    fig = plot_online_returns(col.runs, "exp1", smooth_window=1)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "environment transitions"
    assert "episodic return" in ax.get_ylabel()
    assert "exp1" in fig.get_suptitle() and "cartpole" in fig.get_suptitle()
    got = lines(fig)
    assert set(got) == {"PPO (online), 2 seeds", "BlendRL-PPO (online), 2 seeds"}
    ppo = got["PPO (online), 2 seeds"]
    x, y = np.asarray(ppo.get_xdata()), np.asarray(ppo.get_ydata())
    assert x[0] == 100 and x[-1] == 400 and len(x) == 200
    np.testing.assert_allclose(y, x / 10 + 10)  # seeds x/10 and x/10 + 20
    blend = got["BlendRL-PPO (online), 2 seeds"]
    bx, by = np.asarray(blend.get_xdata()), np.asarray(blend.get_ydata())
    # seed 1 stopped at 200 transitions: the mean is 150 up to there, then seed 0 alone (100)
    np.testing.assert_allclose(by, np.where(bx <= 200, 150.0, 100.0))

    # two seeds: the band (the 95% CI of their mean) runs from one seed to the other
    verts = band_vertices(fig)
    ppo_band = [v for v in verts if np.allclose(np.abs(v[:, 1] - (v[:, 0] / 10 + 10)), 10)]
    assert ppo_band, "the PPO band (mean +- 10) is missing"
    blend_band = [v for v in verts if np.allclose(np.abs(v[:, 1] - 150), 50)]
    assert blend_band and all(v[:, 0].max() <= 200 for v in blend_band)
    assert len(verts) == len(ppo_band) + len(blend_band)


def test_online_returns_smoothing_window(exp1):
    fig = plot_online_returns(collect_runs(exp1, "exp1").runs, "exp1", smooth_window=2)
    line = lines(fig)["PPO (online), 2 seeds"]
    x = np.asarray(line.get_xdata())
    # seed 0 smoothed: 10 15 25 35; seed 1: 30 35 45 55 -> mean 20 25 35 45 at steps 100..400
    np.testing.assert_allclose(line.get_ydata(), np.interp(x, [100, 200, 300, 400], [20, 25, 35, 45]))
    assert "2 episode" in fig.axes[0].get_title()


def test_interval_comparison_values_error_bars_and_labels(exp1):
    fig = plot_interval_comparison(collect_runs(exp1, "exp1").runs, "exp1")
    bars = errorbars(fig)
    assert set(bars) == {"PPO (online), 2 seeds", "BlendRL-PPO (online), 2 seeds",
                         "IQL on PPO data, 2 seeds", "IQL on BlendRL-PPO data, 1 seed",
                         "BlendRL-IQL on BlendRL-PPO data, 1 seed"}
    expected = {  # label: (x, estimates, 95% CI bounds)
        # two seeds: the mean of the seeds' means (20, 30) and (50, 70), CI [min, max]
        "PPO (online), 2 seeds": ([100, 200], [25, 60], [(20, 30), (50, 70)]),
        # x=100: seeds 5 and 7; x=200: seed 0 alone, CI across its episodes (all 9)
        "BlendRL-PPO (online), 2 seeds": ([100, 200], [6, 9], [(5, 7), (9, 9)]),
        "IQL on PPO data, 2 seeds": ([100, 200], [2, 4], [(1, 3), (2, 6)]),
        # one seed: CI across episodes, [0, 10] -> [0, 10] and [4, 8] -> [4, 8]
        "IQL on BlendRL-PPO data, 1 seed": ([100, 200], [5, 6], [(0, 10), (4, 8)]),
        "BlendRL-IQL on BlendRL-PPO data, 1 seed": ([100], [1], [(1, 1)]),
    }
    for label, (x, y, bounds) in expected.items():
        line = bars[label].lines[0]
        assert list(line.get_xdata()) == x, label  # exactly the data limits
        np.testing.assert_allclose(line.get_ydata(), y, err_msg=label)
        np.testing.assert_allclose(bar_bounds(bars[label]), bounds, err_msg=label)
    # bands only where two seeds evaluated: PPO and IQL on PPO data over both marks, BlendRL-PPO
    # at x=100 alone (a single point: no area)
    verts = band_vertices(fig)
    spans = sorted((float(v[:, 1].min()), float(v[:, 1].max())) for v in verts if np.ptp(v[:, 0]) > 0)
    assert spans == [(1.0, 6.0), (20.0, 70.0)]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "environment transitions" and "episodic return" in ax.get_ylabel()
    assert list(ax.get_xticks()) == [100, 200]
    lo, hi = ax.get_ylim()
    assert lo <= 0 and hi >= 70  # autoscaled to the data (the display offset does not hide it)


def test_interval_comparison_counts_only_seeds_that_evaluated(exp1):
    # a third PPO seed just started (training episodes, no evaluation yet): its curve in
    # online_returns.png counts it, the evaluation marks do not
    write_run(exp1, "exp1_ppo_s2", exp_id="exp1", method="ppo", seed=2, results=[],
              timing=timing(1.0, finished=False), log=training_log([100], [5]))
    runs = collect_runs(exp1, "exp1").runs
    # plot_results.py summarises every run of the experiment once and hands that to the figure
    for summary in (None, summarize(runs, BootstrapSettings())):
        bars = errorbars(plot_interval_comparison(runs, "exp1", summary))
        assert "PPO (online), 2 seeds" in bars, sorted(bars)
    assert "PPO (online), 3 seeds" in lines(plot_online_returns(runs, "exp1", smooth_window=1))


def test_legend_sits_outside_the_axes(exp1):
    for fig in (plot_interval_comparison(collect_runs(exp1, "exp1").runs, "exp1"),
                plot_online_returns(collect_runs(exp1, "exp1").runs, "exp1", 1)):
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.get_legend() is None and len(fig.legends) == 1
        legend_box = fig.legends[0].get_window_extent()
        assert not legend_box.overlaps(ax.get_window_extent())
        assert legend_box.x0 >= 0 and legend_box.x1 <= fig.bbox.width  # not cut off


def test_blend_weights_training_curve_and_evaluations(exp1):
    fig = plot_blend_weights(collect_runs(exp1, "exp1").runs, "exp1")
    training = lines(fig)["BlendRL-PPO (online) training, 2 seeds"]
    x = np.asarray(training.get_xdata())
    # seed 0 goes 0.2 -> 0.8 over 100..400, seed 1 stays 0.4
    np.testing.assert_allclose(training.get_ydata(), (0.2 + 0.6 * (x - 100) / 300 + 0.4) / 2)
    verts = band_vertices(fig)
    assert verts and all(np.allclose(np.abs(v[:, 1] - (0.2 + 0.6 * (v[:, 0] - 100) / 300 + 0.4) / 2),
                                     np.abs(0.2 + 0.6 * (v[:, 0] - 100) / 300 - 0.4) / 2) for v in verts)
    bars = errorbars(fig)
    online = bars["BlendRL-PPO (online) evaluation, 2 seeds"]
    assert list(online.lines[0].get_xdata()) == [100, 200]
    np.testing.assert_allclose(online.lines[0].get_ydata(), [0.4, 0.5])  # (0.3, 0.5) then 0.5 alone
    np.testing.assert_allclose(bar_bounds(online), [(0.3, 0.5), (0.5, 0.5)])
    offline = bars["BlendRL-IQL on BlendRL-PPO data evaluation, 1 seed"]
    assert list(offline.lines[0].get_xdata()) == [100]
    np.testing.assert_allclose(offline.lines[0].get_ydata(), [0.25])
    assert fig.axes[0].get_ylim() == (-0.02, 1.02)


# --------------------------------------------------------------------------- the whole report

def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_report_writes_every_file_and_the_timing_sums(exp1, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert make_plots("exp1", exp1, tmp_path / "plots", 10, out, err) == EXIT_OK
    target = tmp_path / "plots" / "exp1"
    for name in PNGS:
        assert (target / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert err.getvalue() == ""  # a complete experiment gives no warning
    rows = read_csv(target / "timing.csv")
    totals = {r["run_id"]: r for r in rows if r["interval"] == "total"}
    assert len(totals) == 8
    ppo = totals["exp1_ppo_s0"]
    assert float(ppo["train_seconds"]) == 3.75 and float(ppo["eval_seconds"]) == 0.75
    assert float(ppo["wall_seconds"]) == 10.0 and ppo["status"] == "finished"
    assert totals["exp1_blendrl_ppo_s1"]["status"] == "unfinished"
    assert float(totals["exp1_iql_on_ppo_s1"]["train_seconds"]) == 12.0
    per_interval = [(r["interval"], r["data_limit"], r["train_seconds"], r["eval_seconds"])
                    for r in rows if r["run_id"] == "exp1_ppo_s0" and r["interval"] != "total"]
    assert per_interval == [("1", "100", "1.5", "0.5"), ("2", "200", "2.25", "0.25")]
    md = (target / "timing.md").read_text()
    assert "| exp1_ppo_s0 " in md and "3.75" in md and "10.00" in md
    assert md in out.getvalue()  # the table is printed too
    for name in (*PNGS, *TABLES):
        assert f"wrote {target / name}" in out.getvalue(), name

    summary = {(r["method"], r["online_source"], r["mark"]): r for r in read_csv(target / "summary.csv")}
    ppo = summary[("ppo", "", "100")]
    assert (ppo["seeds"], ppo["seed_ids"], ppo["episodes"], ppo["ci_over"]) == ("2", "0 1", "5", "seeds")
    assert [float(ppo[k]) for k in ("estimate", "ci_low", "ci_high")] == [25.0, 20.0, 30.0]
    one = summary[("iql", "blendrl_ppo", "100")]
    assert (one["seeds"], one["ci_over"], one["iqm"]) == ("1", "episodes", "")
    assert [float(one[k]) for k in ("estimate", "ci_low", "ci_high")] == [5.0, 0.0, 10.0]
    # offline - online, paired by seed: IQL on PPO data (1 - 20, 3 - 30) and (2 - 50, 6 - 70);
    # one seed, paired by episode: IQL on BlendRL-PPO data [0 - 5, 10 - 5] and [4 - 9, 8 - 9]
    diffs = {(r["method"], r["online_source"], r["mark"]): r
             for r in read_csv(target / "paired_differences.csv")}
    # one seed over 2 paired episodes: the CI is there, but no above/below verdict from it
    few = "too few episodes"
    expected = {("iql", "ppo", "100"): (-23.0, -27.0, -19.0, "below", "seeds"),
                ("iql", "ppo", "200"): (-56.0, -64.0, -48.0, "below", "seeds"),
                ("iql", "blendrl_ppo", "100"): (0.0, -5.0, 5.0, few, "episodes"),
                ("iql", "blendrl_ppo", "200"): (-3.0, -5.0, -1.0, few, "episodes"),
                ("blendrl_iql", "blendrl_ppo", "100"): (-4.0, -4.0, -4.0, few, "episodes")}
    assert set(diffs) == set(expected)
    for key, (d, lo, hi, verdict, over) in expected.items():
        r = diffs[key]
        assert ([float(r["difference"]), float(r["ci_low"]), float(r["ci_high"]), r["verdict"],
                 r["ci_over"]] == [d, lo, hi, verdict, over]), key
    printed = out.getvalue()
    assert ("IQL on PPO data vs PPO (online): above at 0 of 2 marks (95% CI excludes 0), below at 2, "
            "inconclusive at 0; 2 seeds at every mark") in printed
    assert ("IQL on BlendRL-PPO data vs BlendRL-PPO (online): above at 0 of 2 marks (95% CI "
            "excludes 0), below at 0, inconclusive at 0, too few episodes for a verdict at 2 "
            "(1 seed, 2 episodes; at least 10 needed); 1 seed at every mark compared (with one "
            "seed the CI is across paired evaluation episodes); incomplete: see What is "
            "missing") in printed
    # exp1 is partial: seed 1 of BlendRL-PPO stopped after x=100, two offline series lack seed 1
    assert ("missing: BlendRL-PPO (online): seed 1 (exp1_blendrl_ppo_s1) has no evaluation at 1 of "
            "2 marks (200) (unfinished: still running or stopped)") in printed
    assert "missing: IQL on BlendRL-PPO data: seed 1 has no run" in printed
    report = (target / "report.md").read_text()
    assert "![interval comparison](interval_comparison.png)" in report
    assert "- IQL on PPO data vs PPO (online): above at 0 of 2 marks" in report
    assert "- BlendRL-IQL on BlendRL-PPO data: seed 1 has no run" in report


def test_exp1_and_exp10_do_not_mix(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "exp1_ppo_s0", exp_id="exp1", method="ppo", seed=0,
              results=[evaluation(1, 100, [1, 1], 1.0, 1.0)])
    # folder names that would fool a substring match, in both directions
    write_run(runs, "exp1_ppo_s5", exp_id="exp10", method="ppo", seed=5,
              results=[evaluation(1, 100, [99, 99], 1.0, 1.0)])
    write_run(runs, "exp10_ppo_s0", exp_id="exp10", method="ppo", seed=0,
              results=[evaluation(1, 100, [50, 50], 1.0, 1.0)])
    write_run(runs, "renamed", exp_id="exp1", method="ppo", seed=1,
              results=[evaluation(1, 100, [3, 3], 1.0, 1.0)])
    assert [r.run_id for r in collect_runs(runs, "exp1").runs] == ["exp1_ppo_s0", "renamed"]
    assert {r.run_id for r in collect_runs(runs, "exp10").runs} == {"exp1_ppo_s5", "exp10_ppo_s0"}
    for exp, mean in (("exp1", 2.0), ("exp10", 74.5)):
        assert make_plots(exp, runs, tmp_path / "plots", 10, io.StringIO(), io.StringIO()) == EXIT_OK
        fig = plot_interval_comparison(collect_runs(runs, exp).runs, exp)
        np.testing.assert_allclose(errorbars(fig)["PPO (online), 2 seeds"].lines[0].get_ydata(), [mean])
    ids = {r["run_id"] for r in read_csv(tmp_path / "plots" / "exp1" / "timing.csv")}
    assert ids == {"exp1_ppo_s0", "renamed"}
    ids = {r["run_id"] for r in read_csv(tmp_path / "plots" / "exp10" / "timing.csv")}
    assert ids == {"exp1_ppo_s5", "exp10_ppo_s0"}


def test_partial_runs_warn_and_plot_what_exists(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "a_only_run_json", exp_id="e", method="ppo", seed=0)
    write_run(runs, "b_results_no_log", exp_id="e", method="ppo", seed=1,
              results=[evaluation(1, 100, [4, 6], 1.0, 2.0)])
    bad = write_run(runs, "c_corrupt", exp_id="e", method="iql", seed=0, source="ppo",
                    timing=timing(3.0, finished=False))
    (bad / "results.json").write_text('[{"interval": 1, "data_li')  # killed mid-write (no atomic)
    (bad / "training_log.pkl").write_bytes(b"\x80\x04garbage")
    evil = write_run(runs, "d_refused_log", exp_id="e", method="ppo", seed=2, results=[])
    (evil / "training_log.pkl").write_bytes(pickle.dumps(OrderedDict(episode_returns=[1.0])))
    mixed = write_run(runs, "f_bad_entry", exp_id="e", method="ppo", seed=3,
                      results=[{"interval": 1}, evaluation(2, 200, [8, 8], 1.0, 1.0)],
                      log={"episode_end_steps": [100, 200], "episode_returns": [5.0]})
    (runs / "g_not_a_run").mkdir()
    (runs / "h_broken_run_json").mkdir()
    (runs / "h_broken_run_json" / "run.json").write_text("{")
    out, err = io.StringIO(), io.StringIO()
    assert make_plots("e", runs, tmp_path / "plots", 10, out, err) == EXIT_OK
    warnings = err.getvalue()
    for fragment in (f"{bad / 'results.json'}: unreadable JSON", f"{bad / 'training_log.pkl'}",
                     f"{evil / 'training_log.pkl'}", "refusing to load collections.OrderedDict",
                     f"{mixed / 'results.json'} entry 0: no valid data_limit",
                     "have different lengths; using the first 1 entries",
                     "g_not_a_run: no run.json", f"{runs / 'h_broken_run_json' / 'run.json'}"):
        assert fragment in warnings, fragment
    target = tmp_path / "plots" / "e"
    assert (target / "interval_comparison.png").is_file()
    assert (target / "online_returns.png").is_file()  # from the one usable episode of f_bad_entry
    assert not (target / "blend_weights.png").exists()
    assert f"skipped {target / 'blend_weights.png'}: no BlendRL run" in out.getvalue()
    fig = plot_interval_comparison(collect_runs(runs, "e").runs, "e")
    line = errorbars(fig)["PPO (online), 2 seeds"].lines[0]
    assert list(line.get_xdata()) == [100, 200] and list(line.get_ydata()) == [5.0, 8.0]
    totals = {r["run_id"]: r for r in read_csv(target / "timing.csv") if r["interval"] == "total"}
    assert set(totals) == {"a_only_run_json", "b_results_no_log", "c_corrupt", "d_refused_log",
                           "f_bad_entry"}
    assert totals["a_only_run_json"]["status"] == "no timing.json"
    assert totals["a_only_run_json"]["train_seconds"] == "0.0"
    assert totals["c_corrupt"]["status"] == "unfinished" and totals["c_corrupt"]["wall_seconds"] == "3.0"
    assert float(totals["b_results_no_log"]["eval_seconds"]) == 2.0


def test_nothing_plottable_yet_and_stale_files(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "r0", exp_id="e", method="ppo", seed=0)
    target = tmp_path / "plots" / "e"
    target.mkdir(parents=True)
    (target / "blend_weights.png").write_bytes(b"old")
    out = io.StringIO()
    assert make_plots("e", runs, tmp_path / "plots", 10, out, io.StringIO()) == EXIT_OK
    assert not any((target / name).exists() for name in PNGS)  # stale picture removed
    assert "removed the stale blend_weights.png" in out.getvalue()
    assert "No interval evaluated yet." in (target / "timing.md").read_text()
    assert plot_online_returns(collect_runs(runs, "e").runs, "e", 10) is None


def test_no_run_of_the_experiment_lists_the_ones_found(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    err = io.StringIO()
    assert make_plots("exp1", runs, tmp_path / "plots", 10, io.StringIO(), err) == EXIT_NO_RUNS
    assert "no run of experiment 'exp1'" in err.getvalue() and "no run was found there at all" in err.getvalue()
    write_run(runs, "exp10_ppo_s0", exp_id="exp10", method="ppo", seed=0)
    write_run(runs, "exp1_x", exp_id="exp2", method="ppo", seed=0)
    err = io.StringIO()
    assert make_plots("exp1", runs, tmp_path / "plots", 10, io.StringIO(), err) == EXIT_NO_RUNS
    assert "experiments found there: exp10, exp2" in err.getvalue()
    assert not (tmp_path / "plots").exists()


@pytest.mark.parametrize("exp_id,runs_sub,output_sub,window,problem", [
    ("../up", "runs", "plots", 10, "experiment id '../up' is not valid"),
    ("e", "missing", "plots", 10, "is not an existing folder"),
    ("e", "runs", "afile", 10, "exists and is not a folder"),
    ("e", "runs", "plots", 0, "--smooth_window must be at least 1"),
])
def test_bad_arguments(tmp_path, exp_id, runs_sub, output_sub, window, problem):
    write_run(tmp_path / "runs", "r0", exp_id="e", method="ppo", seed=0)
    (tmp_path / "afile").write_text("x")
    err = io.StringIO()
    code = make_plots(exp_id, tmp_path / runs_sub, tmp_path / output_sub, window, io.StringIO(), err)
    assert code == EXIT_USAGE and problem in err.getvalue()
    assert not (tmp_path / "plots").exists()


# --------------------------------------------------------------------------- the script

def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "plot_results.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def test_cli_process_writes_the_plots(exp1, tmp_path):
    r = run_cli("exp1", "--runs_dir", str(exp1), "--output_dir", str(tmp_path / "plots"),
                "--smooth_window", "3")
    assert r.returncode == 0, r.stderr
    for name in (*PNGS, "timing.md", "timing.csv"):
        assert (tmp_path / "plots" / "exp1" / name).stat().st_size > 0, name
    assert "| exp1_iql_on_ppo_s1 " in r.stdout


def test_cli_process_exit_codes(exp1, tmp_path):
    r = run_cli("nope", "--runs_dir", str(exp1), "--output_dir", str(tmp_path / "plots"))
    assert r.returncode == 1 and "no run of experiment 'nope'" in r.stderr
    assert "experiments found there: exp1" in r.stderr
    r = run_cli("exp1", "--runs_dir", str(exp1), "--smooth_window", "0")
    assert r.returncode == 2 and "--smooth_window must be at least 1" in r.stderr
