"""report.md is honest about what it lacks (issue 28, item 4): every planned run and mark without a
valid result is listed under "What is missing" with why (no run, no or a truncated or invalid
results.json, fewer evaluations than planned, a partial dataset), the figures mark incomplete
series, a one-seed verdict over fewer than 10 episodes is "too few episodes", and no broken file
takes plot_results.py down. Run folders written by hand in tmp_path (docs/FORMATS.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.container import ErrorbarContainer

from blendrl.plotting.collect import collect_runs
from blendrl.plotting.figures import (INCOMPLETE_LABEL, plot_interval_comparison,
                                      plot_paired_differences)
from blendrl.plotting.gaps import PARTIAL_DATASET_REASON
from blendrl.plotting.markdown import NOTHING_MISSING
from blendrl.plotting.report import EXIT_OK, make_plots
from blendrl.plotting.stats import BootstrapSettings
from blendrl.plotting.summary import summarize
from helpers_runs import evaluation, timing, write_run

ROOT = Path(__file__).resolve().parents[1]
EXP = "m"
MARKS = (100, 200, 300)
ONLINE_ARGS = {"total_timesteps": 300, "intervals": 3, "eval_episodes": 2}
EVERY_MARK_CLAIM = "every seed of every series evaluated at every mark"


def results(marks=MARKS, returns=(10.0, 12.0)) -> list[dict]:
    return [evaluation(i + 1, m, list(returns), 1.0, 0.5) for i, m in enumerate(marks)]


def online(runs: Path, seed: int, **kw) -> Path:
    kw.setdefault("results", results())
    return write_run(runs, f"{EXP}_ppo_s{seed}", exp_id=EXP, method="ppo", seed=seed,
                     timing=kw.pop("timing", timing(5.0)), args=ONLINE_ARGS, **kw)


def offline(runs: Path, seed: int, **kw) -> Path:
    kw.setdefault("results", results(returns=(11.0, 13.0)))
    return write_run(runs, f"{EXP}_iql_on_ppo_s{seed}", exp_id=EXP, method="iql", seed=seed,
                     source="ppo", source_run_id=f"{EXP}_ppo_s{seed}", timing=timing(5.0),
                     args={"intervals": 3}, **kw)


@pytest.fixture
def complete(tmp_path: Path) -> Path:
    """Two seeds of PPO and of IQL on its data, every mark evaluated, every file valid."""
    runs = tmp_path / "out" / "runs"
    for seed in (0, 1):
        online(runs, seed)
        offline(runs, seed)
    return runs


def report(runs: Path, tmp_path: Path, **kw) -> tuple[str, str, str]:
    """(report.md, printed, warnings) of experiment EXP; plot_results must succeed."""
    out, err = io.StringIO(), io.StringIO()
    assert make_plots(EXP, runs, tmp_path / "plots", 10, out, err, bootstrap_reps=200, **kw) == EXIT_OK
    assert "error:" not in err.getvalue()
    return (tmp_path / "plots" / EXP / "report.md").read_text(), out.getvalue(), err.getvalue()


def missing_section(md: str) -> list[str]:
    """The bullet lines under "What is missing"."""
    section = md.split("## What is missing", 1)[1].split("\n## ", 1)[0]
    return [ln[2:] for ln in section.splitlines() if ln.startswith("- ")]


def assert_listed(md: str, *fragments: str) -> None:
    """Each fragment in one line of "What is missing", and no claim that nothing is."""
    lines = missing_section(md)
    for fragment in fragments:
        assert any(fragment in ln for ln in lines), (fragment, lines)
    assert EVERY_MARK_CLAIM not in md


# --------------------------------------------------------------------------- the complete set

def test_a_complete_set_says_complete(complete, tmp_path):
    md, printed, warnings = report(complete, tmp_path)
    assert NOTHING_MISSING in md and missing_section(md) == []
    assert warnings == "" and "missing:" not in printed
    assert "incomplete" not in md
    runs = collect_runs(complete, EXP).runs
    summary = summarize(runs, BootstrapSettings(reps=200))
    assert all(ss.complete for ss in summary.series) and all(p.complete for p in summary.pairs)
    fig = plot_interval_comparison(runs, EXP, summary)
    assert INCOMPLETE_LABEL not in legend_texts(fig)
    assert all(bar.lines[0].get_markerfacecolor() != "none" for bar in errorbars(fig))


# --------------------------------------------------------------------------- each gap, with why

def test_truncated_results_json_is_listed_with_its_marks_and_why(complete, tmp_path):
    folder = complete / f"{EXP}_iql_on_ppo_s1"
    text = (folder / "results.json").read_text()
    (folder / "results.json").write_text(text[: len(text) // 2])  # killed mid-write
    md, printed, warnings = report(complete, tmp_path)
    assert_listed(md, f"IQL on PPO data: seed 1 ({EXP}_iql_on_ppo_s1) has no evaluation at 3 of 3 "
                      "marks (100, 200, 300) (results.json is not valid JSON, truncated or corrupt")
    assert "unreadable JSON" in warnings
    assert f"missing: IQL on PPO data: seed 1 ({EXP}_iql_on_ppo_s1)" in printed


@pytest.mark.parametrize("content,why", [
    ({"returns": [1, 2]}, "results.json holds an object, not a list of evaluations"),
    ("[]x", "results.json is not valid JSON"),
    (None, "results.json holds null, not a list of evaluations"),
    ([{"interval": 1, "data_limit": "100"}, evaluation(2, 200, [1, 1], 1.0, 1.0),
      evaluation(3, 300, [1, 1], 1.0, 1.0)],
     "has no evaluation at 1 of 3 marks (100) (entry 1 of 3 of results.json unusable"),
])
def test_invalid_results_structure_is_listed_with_why(complete, tmp_path, content, why):
    path = complete / f"{EXP}_ppo_s0" / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    md, _, _ = report(complete, tmp_path)
    assert_listed(md, f"PPO (online): seed 0 ({EXP}_ppo_s0)", why)


def test_run_without_results_json_and_seed_without_run_are_listed(complete, tmp_path):
    (complete / f"{EXP}_ppo_s1" / "results.json").unlink()
    write_run(complete, f"{EXP}_ppo_s2", exp_id=EXP, method="ppo", seed=2, args=ONLINE_ARGS,
              results=results())
    md, _, _ = report(complete, tmp_path)
    assert_listed(md,
                  f"PPO (online): seed 1 ({EXP}_ppo_s1) has no evaluation at 3 of 3 marks "
                  "(100, 200, 300) (no results.json)",
                  "IQL on PPO data: seed 2 has no run")


def test_planned_runs_of_the_registry_without_a_folder_are_listed(complete, tmp_path):
    logs = complete.parent.parent / "logs" / EXP  # where the launcher keeps it
    logs.mkdir(parents=True)
    jobs = [{"name": f"{EXP}_ppo_s{k}", "kind": "online", "method": "ppo", "seed": k,
             "run_id": f"{EXP}_ppo_s{k}", "state": "done", "exit_code": 0} for k in (0, 1, 2)]
    jobs += [{"name": f"{EXP}_iql_on_ppo_s{k}", "kind": "offline", "method": "iql", "seed": k,
              "run_id": f"{EXP}_iql_on_ppo_s{k}", "dataset_dir": f"/d/{EXP}_ppo_s{k}",
              "state": "failed" if k == 2 else "done", "exit_code": 1 if k == 2 else 0,
              "reason": "dataset fault" if k == 2 else None} for k in (0, 1, 2)]
    jobs.append({"name": "plots", "kind": "plot", "state": "pending"})
    (logs / "registry.json").write_text(json.dumps({"format_version": 1, "exp_id": EXP,
                                                    "jobs": jobs}))
    (complete / f"{EXP}_iql_on_ppo_s2").mkdir()  # started, killed before run.json
    md, _, _ = report(complete, tmp_path)
    assert_listed(md,
                  f"PPO (online): seed 2 ({EXP}_ppo_s2) has no run: no run folder {EXP}_ppo_s2 "
                  f"under {complete}; its job is done (exit 0) (no result at any mark)",
                  f"IQL on PPO data: seed 2 ({EXP}_iql_on_ppo_s2) has no run: its folder has no "
                  "run.json (not started, or killed before its first write); its job is failed "
                  "(exit 1): dataset fault (no result at any mark)")
    assert f"training jobs of {logs / 'registry.json'}" in md
    assert "seed 2 has no run\n" not in md  # the registry's lines replace the inferred ones
    # the same registry given explicitly, from the command line
    other = tmp_path / "elsewhere.json"
    other.write_text((logs / "registry.json").read_text())
    (logs / "registry.json").unlink()
    r = subprocess.run([sys.executable, str(ROOT / "plot_results.py"), EXP, "--runs_dir",
                        str(complete), "--output_dir", str(tmp_path / "cli"), "--registry",
                        str(other), "--bootstrap_reps", "200"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"missing: PPO (online): seed 2 ({EXP}_ppo_s2) has no run: no run folder" in r.stdout


def test_fewer_evaluations_than_planned_marks_are_listed(tmp_path):
    runs = tmp_path / "runs"
    online(runs, 0, results=results(marks=(100, 200)), timing=timing(2.0, finished=False))
    md, _, _ = report(runs, tmp_path)
    # one seed: nothing else says where the third mark lies, its run.json says 3 intervals
    assert_listed(md, f"PPO (online): seed 0 ({EXP}_ppo_s0) has no evaluation at 1 of 3 marks "
                      "(no run has recorded their x) (unfinished: still running or stopped)")


def test_fewer_evaluations_of_an_offline_run_name_the_marks_its_online_run_has(complete, tmp_path):
    (complete / f"{EXP}_iql_on_ppo_s0" / "results.json").write_text(json.dumps(results(marks=(100,))))
    md, _, _ = report(complete, tmp_path)
    assert_listed(md, f"IQL on PPO data: seed 0 ({EXP}_iql_on_ppo_s0) has no evaluation at 2 of 3 "
                      "marks (200, 300)")


@pytest.mark.parametrize("key,value", [("partial_dataset", True), ("dataset_partial", True),
                                       ("partial", True), ("partial_dataset", {"count": 150})])
def test_an_offline_run_on_a_partial_dataset_is_listed(tmp_path, key, value):
    runs = tmp_path / "runs"
    online(runs, 0)
    folder = offline(runs, 0, results=results(marks=(100,)))
    meta = json.loads((folder / "run.json").read_text())
    meta[key] = value
    (folder / "run.json").write_text(json.dumps(meta))
    md, _, _ = report(runs, tmp_path)
    assert_listed(md, f"IQL on PPO data: seed 0 ({EXP}_iql_on_ppo_s0) has no evaluation at 2 of 3 "
                      f"marks (200, 300) ({PARTIAL_DATASET_REASON})")


def test_a_partial_dataset_is_listed_even_with_every_mark(tmp_path):
    runs = tmp_path / "runs"
    online(runs, 0)
    folder = offline(runs, 0)
    meta = json.loads((folder / "run.json").read_text())
    meta["dataset_source"]["partial"] = True
    (folder / "run.json").write_text(json.dumps(meta))
    md, _, _ = report(runs, tmp_path)
    assert_listed(md, f"({EXP}_iql_on_ppo_s0) has a valid evaluation at every planned mark, but: "
                      f"{PARTIAL_DATASET_REASON}")


def test_an_unreadable_run_json_is_listed(complete, tmp_path):
    broken = complete / f"{EXP}_iql_on_ppo_s2"
    broken.mkdir()
    (broken / "run.json").write_text('{"exp_id": "m", "meth')
    md, _, _ = report(complete, tmp_path)
    assert_listed(md, f"folder {EXP}_iql_on_ppo_s2: its run.json is not valid JSON")


# --------------------------------------------------------------------------- figures

def errorbars(fig) -> list[ErrorbarContainer]:
    return [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]


def legend_texts(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_figures_draw_incomplete_series_hollow_and_say_so(complete, tmp_path):
    (complete / f"{EXP}_iql_on_ppo_s1" / "results.json").write_text(json.dumps(results(marks=(100,))))
    runs = collect_runs(complete, EXP).runs
    summary = summarize(runs, BootstrapSettings(reps=200))
    assert [(ss.series.label, ss.complete) for ss in summary.series] == \
        [("PPO (online)", True), ("IQL on PPO data", False)]
    assert [p.complete for p in summary.pairs] == [False]
    for fig, hollow in ((plot_interval_comparison(runs, EXP, summary), {"IQL on PPO data, 2 seeds"}),
                        (plot_paired_differences(runs, EXP, summary),
                         {"IQL on PPO data - PPO (online), 2 seeds"})):
        faces = {c.get_label(): c.lines[0].get_markerfacecolor() for c in errorbars(fig)}
        assert {label for label, face in faces.items() if face == "none"} == hollow, faces
        assert INCOMPLETE_LABEL in legend_texts(fig)
    md, _, _ = report(complete, tmp_path)
    assert "Incomplete series (see What is missing): IQL on PPO data." in md
    assert "**IQL on PPO data - PPO (online)** (incomplete: see What is missing)" in md
    assert ("1-2 seeds depending on the mark (with one seed the CI is across paired evaluation "
            "episodes); incomplete: see What is missing") in md


# --------------------------------------------------------------------------- verdicts

def verdict_run(runs: Path, seeds, episodes: int, offset: float) -> None:
    """PPO and IQL on its data at one mark; IQL ``offset`` above PPO in every episode."""
    for seed in seeds:
        ret = [float(10 * seed + j) for j in range(episodes)]
        write_run(runs, f"{EXP}_ppo_s{seed}", exp_id=EXP, method="ppo", seed=seed,
                  results=[evaluation(1, 100, ret, 1.0, 1.0)], timing=timing(1.0))
        write_run(runs, f"{EXP}_iql_on_ppo_s{seed}", exp_id=EXP, method="iql", seed=seed,
                  source="ppo", source_run_id=f"{EXP}_ppo_s{seed}", timing=timing(1.0),
                  results=[evaluation(1, 100, [r + offset + seed for r in ret], 1.0, 1.0)])


def test_one_seed_with_two_episodes_gets_no_verdict(tmp_path):
    runs = tmp_path / "runs"
    verdict_run(runs, (0,), episodes=2, offset=5.0)
    (d,) = summarize(collect_runs(runs, EXP).runs, BootstrapSettings(reps=200)).pairs[0].marks
    assert (d.ci_low, d.ci_high) == (5.0, 5.0) and d.verdict == "too few episodes"
    md, printed, _ = report(runs, tmp_path)
    expected = ("IQL on PPO data vs PPO (online): above at 0 of 1 mark (95% CI excludes 0), below "
                "at 0, inconclusive at 0, too few episodes for a verdict at 1 (1 seed, 2 episodes; "
                "at least 10 needed); 1 seed at every mark")
    assert f"- {expected}" in md and expected in printed
    assert "| too few episodes for a verdict (1 seed, 2 episodes; at least 10 needed) |" in md
    csv = (tmp_path / "plots" / EXP / "paired_differences.csv").read_text()
    assert ",too few episodes," in csv and ",above," not in csv


@pytest.mark.parametrize("seeds,episodes", [((0,), 10), ((0, 1), 2)])
def test_verdicts_with_enough_data_are_unchanged(tmp_path, seeds, episodes):
    runs = tmp_path / "runs"
    verdict_run(runs, seeds, episodes=episodes, offset=5.0)
    (d,) = summarize(collect_runs(runs, EXP).runs, BootstrapSettings(reps=200)).pairs[0].marks
    assert d.verdict == "above" and d.ci_low > 0
    md, _, _ = report(runs, tmp_path)
    assert "too few episodes for a verdict at" not in md
    assert "above at 1 of 1 mark (95% CI excludes 0)" in md


# --------------------------------------------------------------------------- nothing crashes

BROKEN_RESULTS = [
    b"", b"   ", b"[", b"nul", b"{}", b"null", b"42", b'"text"', b"[null, 1, []]", b"[[1, 2]]",
    b'[{"data_limit": true}]', b'[{"data_limit": -5, "returns": [1]}]',
    b'[{"data_limit": 100, "returns": "abc"}]', b'[{"data_limit": 100, "returns": []}]',
    b'[{"data_limit": 100, "returns": [NaN, Infinity]}]',
    b'[{"data_limit": 100, "returns": [1e308, 1e308]}]',
    b'[{"data_limit": 1e300, "mean_return": 1}]', b'[{"data_limit": 100, "mean_return": "x"}]',
    b'[{"data_limit": 100, "mean_return": 1, "interval": "a", "logic_weight": [1]}]',
    b"[" * 100000, b"[1" + b"0" * 5000 + b"]", b"\xff\xfe[",
    b'[{"data_limit": 100, "returns": [1, true]}]',
]
"""results.json contents a killed, buggy or hostile writer could leave."""


def test_no_broken_results_json_takes_plot_results_down(complete, tmp_path):
    names = []
    for i, content in enumerate(BROKEN_RESULTS):
        folder = write_run(complete, f"{EXP}_broken_{i}", exp_id=EXP, method="blendrl_ppo",
                           seed=10 + i, args=ONLINE_ARGS,
                           timing={"finished": "yes", "wall_seconds": "x"})
        (folder / "results.json").write_bytes(content)
        names.append(folder.name)
    md, _, _ = report(complete, tmp_path)
    lines = missing_section(md)
    for name in names:
        assert any(f"({name})" in ln for ln in lines), name
    assert EVERY_MARK_CLAIM not in md
