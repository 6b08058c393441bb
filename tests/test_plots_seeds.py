"""A small 3-seed experiment written by hand: summary.csv, paired_differences.csv, report.md and
the figures' intervals read back and compared with hand computations; a seed still running; the
same files from the CLI process (the bootstrap seed makes them identical)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.container import ErrorbarContainer

from blendrl.plotting.collect import collect_runs
from blendrl.plotting.figures import plot_interval_comparison, plot_paired_differences
from blendrl.plotting.report import EXIT_OK, make_plots
from helpers_runs import evaluation, timing, training_log, write_run

ROOT = Path(__file__).resolve().parents[1]
MARKS = (1000, 2000, 3000)
SPREAD = [-1.5, -0.5, 0.5, 1.5]
"""each evaluation's 4 episode returns are its mean + these (mean unchanged)"""
ONLINE_ARGS = {"total_timesteps": 3000, "num_envs": 4, "intervals": 3, "eval_episodes": 4}
OFFLINE_ARGS = {"epochs": 5, "intervals": 3, "eval_episodes": 4}

PPO = {0: [10, 50, 90], 1: [20, 60, 100], 2: [30, 70, 110]}
"""PPO (online) evaluation means per seed at the three marks: across seeds 20, 60, 100"""
IQL_DELTA = {0: [5, -2, -10], 1: [6, 3, -12], 2: [7, -1, -11]}
"""IQL on PPO data minus PPO per seed: mark 1 all above 0 (mean 6, CI [5, 7]); mark 2 mixed
(mean 0, CI [-2, 3]); mark 3 all below (mean -11, CI [-12, -10])"""
BLEND = {k: [100 + k, 200 + k, 300 + k] for k in range(3)}
"""BlendRL-PPO (online) means; BlendRL-IQL on its data is 50 higher on every seed and mark, and
its seed 2 is still running (no evaluation at 3000)"""


def results(means: list[float], marks=MARKS, episodes=None) -> list[dict]:
    return [evaluation(i + 1, mark, episodes[i] if episodes else [m + s for s in SPREAD], 2.0, 0.5)
            for i, (mark, m) in enumerate(zip(marks, means))]


@pytest.fixture
def three_seeds(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    for k in range(3):
        write_run(runs, f"s3_ppo_cartpole_s{k}", exp_id="s3", method="ppo", seed=k,
                  results=results(PPO[k]), timing=timing(30.0 + k), args=ONLINE_ARGS,
                  log=training_log([500, 1500, 3000], [10.0 * (k + 1)] * 3))
        write_run(runs, f"s3_blendrl_ppo_cartpole_s{k}", exp_id="s3", method="blendrl_ppo", seed=k,
                  results=results(BLEND[k]), timing=timing(40.0), args=ONLINE_ARGS,
                  log=training_log([500, 3000], [5.0, 6.0], blend=[(500, 0.2 + 0.1 * k), (3000, 0.6)]))
        write_run(runs, f"s3_iql_on_ppo_cartpole_s{k}", exp_id="s3", method="iql", seed=k,
                  source="ppo", source_run_id=f"s3_ppo_cartpole_s{k}", args=OFFLINE_ARGS,
                  results=results([p + d for p, d in zip(PPO[k], IQL_DELTA[k])]), timing=timing(20.0))
        running = k == 2
        write_run(runs, f"s3_blendrl_iql_on_blendrl_ppo_cartpole_s{k}", exp_id="s3",
                  method="blendrl_iql", seed=k, source="blendrl_ppo", args=OFFLINE_ARGS,
                  source_run_id=f"s3_blendrl_ppo_cartpole_s{k}",
                  results=results([b + 50 for b in BLEND[k]][:2 if running else 3]),
                  timing=timing(25.0, finished=not running))
    # IQL on BlendRL-PPO data: seed 0 only; paired by episode with BlendRL-PPO seed 0
    write_run(runs, "s3_iql_on_blendrl_ppo_cartpole_s0", exp_id="s3", method="iql", seed=0,
              source="blendrl_ppo", source_run_id="s3_blendrl_ppo_cartpole_s0", args=OFFLINE_ARGS,
              results=results([0, 0, 0], episodes=[[100 + s + d for s, d in zip(SPREAD, (1, 2, 3, 4))],
                                                   [200 + s for s in SPREAD][::-1],
                                                   [301 + s - 9 for s in SPREAD]]),
              timing=timing(5.0))
    return runs


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def floats(row: dict, *keys: str) -> list[float]:
    return [float(row[k]) for k in keys]


def test_three_seed_files_and_report(three_seeds, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert make_plots("s3", three_seeds, tmp_path / "plots", 10, out, err) == EXIT_OK
    assert err.getvalue() == ""
    target = tmp_path / "plots" / "s3"
    for name in ("online_returns.png", "interval_comparison.png", "paired_differences.png",
                 "blend_weights.png"):
        assert (target / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    rows = read_csv(target / "summary.csv")
    assert len(rows) == 5 * 3  # 5 series x 3 marks
    by = {(r["method"], r["online_source"], int(r["mark"])): r for r in rows}
    ppo = by[("ppo", "", 1000)]
    assert (ppo["seeds"], ppo["seed_ids"], ppo["episodes"], ppo["ci_over"], ppo["iqm"],
            ppo["label"], ppo["env"]) == ("3", "0 1 2", "12", "seeds", "", "PPO (online)", "cartpole")
    assert floats(ppo, "estimate", "ci_low", "ci_high", "confidence") == [20.0, 10.0, 30.0, 0.95]
    assert floats(by[("ppo", "", 3000)], "estimate", "ci_low", "ci_high") == [100.0, 90.0, 110.0]
    running = by[("blendrl_iql", "blendrl_ppo", 3000)]  # seed 2 has not evaluated there yet
    assert (running["seeds"], running["seed_ids"]) == ("2", "0 1")
    assert floats(running, "estimate", "ci_low", "ci_high") == [350.5, 350.0, 351.0]
    one = by[("iql", "blendrl_ppo", 1000)]
    assert (one["seeds"], one["ci_over"], one["episodes"]) == ("1", "episodes", "4")
    # its episodes 99.5, 101.5, 103.5, 105.5 (4 values: the interval need not reach the extremes)
    assert float(one["estimate"]) == 102.5
    assert 99.5 <= float(one["ci_low"]) < 102.5 < float(one["ci_high"]) <= 105.5

    diffs = {(r["method"], r["online_source"], int(r["mark"])): r
             for r in read_csv(target / "paired_differences.csv")}
    assert len(diffs) == 9
    expected = {
        ("iql", "ppo", 1000): (6.0, 5.0, 7.0, "above", "3"),
        ("iql", "ppo", 2000): (0.0, -2.0, 3.0, "inconclusive", "3"),
        ("iql", "ppo", 3000): (-11.0, -12.0, -10.0, "below", "3"),
        ("blendrl_iql", "blendrl_ppo", 1000): (50.0, 50.0, 50.0, "above", "3"),
        ("blendrl_iql", "blendrl_ppo", 3000): (50.0, 50.0, 50.0, "above", "2"),
        # one seed, episode j against episode j: differences 1, 2, 3, 4 -> mean 2.5, CI in [1, 4]
        ("iql", "blendrl_ppo", 3000): (-8.0, -8.0, -8.0, "too few episodes", "1"),
    }
    for key, (d, lo, hi, verdict, seeds) in expected.items():
        r = diffs[key]
        assert floats(r, "difference", "ci_low", "ci_high") == [d, lo, hi], key
        assert (r["verdict"], r["seeds"]) == (verdict, seeds), key
    ep = diffs[("iql", "blendrl_ppo", 1000)]
    assert ep["ci_over"] == "episodes" and ep["episodes"] == "4" and float(ep["difference"]) == 2.5
    assert 1.0 <= float(ep["ci_low"]) < 2.5 < float(ep["ci_high"]) <= 4.0
    assert ep["verdict"] == "too few episodes"  # one seed, 4 episodes: the CI, but no verdict
    # reversed episode order: pairs 201.5-198.5, ..., 198.5-201.5 = 3, 1, -1, -3
    rev = diffs[("iql", "blendrl_ppo", 2000)]
    assert float(rev["difference"]) == 0.0 and rev["verdict"] == "too few episodes"
    assert floats(diffs[("iql", "ppo", 1000)], "offline_estimate", "online_estimate") == [26.0, 20.0]

    report = (target / "report.md").read_text()
    readings = [
        "- IQL on PPO data vs PPO (online): above at 1 of 3 marks (95% CI excludes 0), below at 1, "
        "inconclusive at 1; 3 seeds at every mark",
        "- IQL on BlendRL-PPO data vs BlendRL-PPO (online): above at 0 of 3 marks (95% CI excludes "
        "0), below at 0, inconclusive at 0, too few episodes for a verdict at 3 (1 seed, 4 "
        "episodes; at least 10 needed); 1 seed at every mark compared (with one seed the CI is "
        "across paired evaluation episodes); incomplete: see What is missing",
        "- BlendRL-IQL on BlendRL-PPO data vs BlendRL-PPO (online): above at 3 of 3 marks (95% CI "
        "excludes 0), below at 0, inconclusive at 0; 2-3 seeds depending on the mark",
    ]
    for line in readings:
        assert line in report, line
        assert line[2:] in out.getvalue()  # printed as well
    for fragment in (
            "# Experiment s3: online vs offline", "seeds 0, 1, 2",
            "total_timesteps=3000, num_envs=4, intervals=3, eval_episodes=4",
            "intervals=3, eval_episodes=4, epochs=5",
            "![interval comparison](interval_comparison.png)",
            "![paired differences](paired_differences.png)",
            "- IQL on BlendRL-PPO data: seed 1 has no run",
            "- BlendRL-IQL on BlendRL-PPO data: seed 2 (s3_blendrl_iql_on_blendrl_ppo_cartpole_s2) "
            "has no evaluation at 1 of 3 marks (3000) (unfinished: still running or stopped)",
            "| s3_ppo_cartpole_s1 ", "Percentile bootstrap (2000 resamples, seed 0)"):
        assert fragment in report, fragment
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in report.splitlines()
             if ln.startswith("| PPO (online) ")]
    assert ["PPO (online)", "3000", "3", "12", "seeds", "100.0", "[90.0, 110.0]", ""] in cells


def errorbars(fig) -> dict[str, ErrorbarContainer]:
    return {c.get_label(): c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)}


def bounds(c: ErrorbarContainer) -> list[tuple[float, float]]:
    (bars,) = c.lines[2]
    return [(float(min(s[:, 1])), float(max(s[:, 1]))) for s in bars.get_segments()]


def test_three_seed_figures_show_the_intervals(three_seeds):
    runs = collect_runs(three_seeds, "s3").runs
    fig = plot_paired_differences(runs, "s3")
    ax = fig.axes[0]
    assert "offline minus online" in fig.get_suptitle()
    assert "paired bootstrap CI across seeds" in ax.get_title()
    zero = [ln for ln in ax.get_lines() if list(ln.get_ydata()) == [0, 0]]
    assert zero, "the zero line is missing"
    bars = errorbars(fig)
    iql = bars["IQL on PPO data - PPO (online), 3 seeds"]
    assert list(iql.lines[0].get_xdata()) == list(MARKS)
    np.testing.assert_allclose(iql.lines[0].get_ydata(), [6, 0, -11])
    np.testing.assert_allclose(bounds(iql), [(5, 7), (-2, 3), (-12, -10)])
    assert "IQL on BlendRL-PPO data - BlendRL-PPO (online), 1 seed" in bars
    # bands where several seeds: IQL on PPO data over all marks, from -12 to 7
    spans = [(float(p.vertices[:, 1].min()), float(p.vertices[:, 1].max()))
             for c in ax.collections if isinstance(c, PolyCollection) for p in c.get_paths()]
    assert (-12.0, 7.0) in spans

    fig = plot_interval_comparison(runs, "s3")
    bars = errorbars(fig)
    ppo = bars["PPO (online), 3 seeds"]
    np.testing.assert_allclose(ppo.lines[0].get_ydata(), [20, 60, 100])
    np.testing.assert_allclose(bounds(ppo), [(10, 30), (50, 70), (90, 110)])
    assert "95% bootstrap CI" in fig.axes[0].get_title()
    assert "across its evaluation episodes" in fig.axes[0].get_title()


def test_cli_writes_the_same_files_as_the_library(three_seeds, tmp_path):
    assert make_plots("s3", three_seeds, tmp_path / "a", 10, io.StringIO(), io.StringIO(),
                      bootstrap_seed=5) == EXIT_OK
    r = subprocess.run([sys.executable, str(ROOT / "plot_results.py"), "s3", "--runs_dir",
                        str(three_seeds), "--output_dir", str(tmp_path / "b"), "--bootstrap_seed",
                        "5"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in ("summary.csv", "paired_differences.csv", "report.md"):
        assert (tmp_path / "a" / "s3" / name).read_text() == (tmp_path / "b" / "s3" / name).read_text()
    assert "IQL on PPO data vs PPO (online): above at 1 of 3 marks" in r.stdout


@pytest.mark.parametrize("flag,value,problem", [
    ("--bootstrap_reps", "10", "--bootstrap_reps must be at least 100"),
    ("--bootstrap_seed", "-1", "--bootstrap_seed must be at least 0"),
    ("--confidence", "1.5", "--confidence must be in [0.5, 1)"),
    ("--confidence", "nan", "--confidence must be in [0.5, 1)"),
])
def test_bad_bootstrap_flags_exit_2_before_any_work(three_seeds, tmp_path, flag, value, problem):
    r = subprocess.run([sys.executable, str(ROOT / "plot_results.py"), "s3", "--runs_dir",
                        str(three_seeds), "--output_dir", str(tmp_path / "p"), flag, value],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {problem}, got {value}"
    assert not (tmp_path / "p").exists()
