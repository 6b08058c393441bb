"""End to end in local mode with the REAL training and plotting scripts (tiny cartpole runs):
run_full_cycle.sh -> online -> offline -> plots; a failing online job; kill_experiments.sh;
re-running with --skip_existing."""

from __future__ import annotations

import json
import subprocess

import pytest

from blendrl.launch import procs
from test_launch_support import (ROOT, all_files, clean_env, real_scripts_missing, registry_of,
                                 run_cycle, wait_for)

pytestmark = pytest.mark.slow

missing = real_scripts_missing()
needs_scripts = pytest.mark.skipif(bool(missing), reason=f"scripts not written yet: {missing}")

TINY = {"ENVIRONMENT": "cartpole", "ONLINE_METHODS": "ppo", "OFFLINE_METHODS": "iql",
        "OFFLINE_DATASETS": "ppo", "ONLINE_STEPS": "2048", "INTERVALS_COUNT": "2",
        "EVAL_EPISODES": "2", "OFFLINE_EPOCHS": "1", "SEEDS": "0", "LOCAL": "1"}


def _kill(work, exp):
    # a generous grace: one PPO iteration (when the script checks for the signal) can take long
    # on a loaded machine; on an idle one the job checkpoints and exits in about a second
    return subprocess.run([str(ROOT / "kill_experiments.sh"), exp, "--logs_dir", str(work / "logs"),
                           "--grace", "90"], capture_output=True, text=True, timeout=200)


@needs_scripts
def test_tiny_cycle_online_offline_plots_then_skip_existing(tmp_path):
    work = tmp_path / "work"
    env = clean_env(EXPERIMENT_ID="tiny", **TINY)
    res = run_cycle(["--work_dir", str(work), "--wait"], env=env, script="run_full_cycle.sh", timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    reg = registry_of(work, "tiny")
    assert [(j["name"], j["state"], j["exit_code"]) for j in reg["jobs"]] == [
        ("tiny_ppo_cartpole_s0", "done", 0), ("tiny_iql_on_ppo_cartpole_s0", "done", 0),
        ("plots", "done", 0)]
    online = work / "out" / "runs" / "tiny_ppo_cartpole_s0"
    offline = work / "out" / "runs" / "tiny_iql_on_ppo_cartpole_s0"
    on_results = json.loads((online / "results.json").read_text())
    off_results = json.loads((offline / "results.json").read_text())
    # the golden rule: the offline intervals are the online marks
    assert [r["data_limit"] for r in off_results] == [r["data_limit"] for r in on_results]
    assert len(on_results) == 2 and all(r["episodes"] == 2 for r in on_results + off_results)
    run = json.loads((offline / "run.json").read_text())
    assert run["exp_id"] == "tiny" and run["dataset_source"]["run_id"] == "tiny_ppo_cartpole_s0"
    assert (work / "offline_dataset" / "tiny_ppo_cartpole_s0" / "manifest.json").is_file()
    for name in ("online_returns.png", "interval_comparison.png", "timing.md", "timing.csv"):
        assert (work / "plots" / "tiny" / name).stat().st_size > 0
    # the offline job started after the online job had ended
    jobs = {j["name"]: j for j in reg["jobs"]}
    assert jobs["tiny_iql_on_ppo_cartpole_s0"]["started_at"] >= jobs["tiny_ppo_cartpole_s0"]["ended_at"]

    before = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    again = run_cycle(["--work_dir", str(work), "--skip_existing", "--wait"], env=env,
                      script="run_full_cycle.sh")
    assert again.returncode == 0 and "nothing to run" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()} == before


@needs_scripts
def test_failing_online_job_leaves_its_offline_job_cancelled(tmp_path):
    work = tmp_path / "work"
    env = clean_env(EXPERIMENT_ID="bad", ONLINE_EXTRA_ARGS="--num_envs 0", **TINY)
    res = run_cycle(["--work_dir", str(work), "--wait"], env=env, timeout=300)
    assert res.returncode == 1
    jobs = {j["name"]: j for j in registry_of(work, "bad")["jobs"]}
    assert (jobs["bad_ppo_cartpole_s0"]["state"], jobs["bad_ppo_cartpole_s0"]["exit_code"]) == ("failed", 2)
    assert "--num_envs must be positive" in (work / "logs/bad/bad_ppo_cartpole_s0.log").read_text()
    off = jobs["bad_iql_on_ppo_cartpole_s0"]
    assert off["state"] == "cancelled" and off["pid"] is None
    assert not (work / "out" / "runs" / "bad_iql_on_ppo_cartpole_s0").exists()
    assert not (work / "logs" / "bad" / "bad_iql_on_ppo_cartpole_s0.log").exists()


@needs_scripts
def test_kill_experiments_stops_one_real_experiment_and_keeps_its_files(tmp_path):
    work = tmp_path / "work"
    regs = {}
    for exp in ("ka", "kb"):
        env = clean_env(EXPERIMENT_ID=exp, **{**TINY, "ONLINE_STEPS": "5000000", "MAX_PARALLEL": "1",
                                              "ONLINE_EXTRA_ARGS": "--progress_seconds 0.5"})
        res = run_cycle(["--work_dir", str(work)], env=env)
        assert res.returncode == 0, res.stdout + res.stderr
    try:
        for exp in ("ka", "kb"):
            # training has begun once the first PPO progress line is in the job's log
            log = work / "logs" / exp / f"{exp}_ppo_cartpole_s0.log"
            wait_for(lambda: log.exists() and "SPS" in log.read_text(), 120, f"{exp} to train")
            regs[exp] = registry_of(work, exp)
        before = all_files(work)
        res = _kill(work, "ka")
        assert res.returncode == 0, res.stderr
        ka, kb = regs["ka"]["jobs"][0], regs["kb"]["jobs"][0]
        assert not procs.group_alive(ka["pgid"])
        assert not procs.is_alive(regs["ka"]["runner"]["pid"], regs["ka"]["runner"]["start_time"])
        assert procs.is_alive(kb["pid"], kb["start_time"])  # the other experiment goes on
        assert procs.is_alive(regs["kb"]["runner"]["pid"], regs["kb"]["runner"]["start_time"])
        assert before <= all_files(work)  # nothing deleted
        jobs = registry_of(work, "ka")["jobs"]
        assert [(j["state"], j["exit_code"]) for j in jobs] == [
            ("cancelled", 75), ("cancelled", None), ("cancelled", None)]
        # it checkpointed on SIGTERM: --resume could continue it
        assert (work / "out" / "runs" / "ka_ppo_cartpole_s0" / "checkpoints" / "latest.pt").is_file()
        assert not (work / "out" / "runs" / "ka_iql_on_ppo_cartpole_s0").exists()
    finally:
        for exp in ("ka", "kb"):
            _kill(work, exp)
    assert not procs.group_alive(regs["kb"]["jobs"][0]["pgid"])
