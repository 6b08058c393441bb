"""End to end in local mode with the REAL training and plotting scripts (tiny cartpole runs):
run_full_cycle.sh -> online -> offline -> plots; a failing online job; kill_experiments.sh;
re-running with --skip_existing; --resume after a kill mid-online-run and after a crashed
offline job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import pytest

from blendrl.launch import procs
from test_launch_support import (PY, ROOT, all_files, clean_env, real_scripts_missing, registry_of,
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
    env = clean_env(EXPERIMENT_ID="bad", ONLINE_EXTRA_ARGS="--device nonsense", **TINY)
    res = run_cycle(["--work_dir", str(work), "--wait"], env=env, timeout=300)
    assert res.returncode == 1
    jobs = {j["name"]: j for j in registry_of(work, "bad")["jobs"]}
    assert (jobs["bad_ppo_cartpole_s0"]["state"], jobs["bad_ppo_cartpole_s0"]["exit_code"]) == ("failed", 2)
    assert "invalid --device 'nonsense'" in (work / "logs/bad/bad_ppo_cartpole_s0.log").read_text()
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


def _verified_dataset(work, run_id: str) -> dict:
    """The manifest of a dataset that ``dataset_utils.py verify`` finds whole."""
    ds = work / "offline_dataset" / run_id
    check = subprocess.run([PY, str(ROOT / "dataset_utils.py"), "verify", str(ds)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    return json.loads((ds / "manifest.json").read_text())


@needs_scripts
def test_experiment_killed_mid_online_run_resumes_the_run_from_its_checkpoint(tmp_path):
    work = tmp_path / "work"
    steps = 16384
    env = clean_env(EXPERIMENT_ID="rk", **{**TINY, "ONLINE_STEPS": str(steps), "MAX_PARALLEL": "1",
                                           "ONLINE_EXTRA_ARGS": "--progress_seconds 0.5"})
    res = run_cycle(["--work_dir", str(work)], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    log = work / "logs" / "rk" / "rk_ppo_cartpole_s0.log"
    try:
        wait_for(lambda: log.exists() and "SPS" in log.read_text(), 120, "the online run to train")
        res = _kill(work, "rk")
        assert res.returncode == 0, res.stderr
    finally:
        _kill(work, "rk")
    stopped = re.findall(r"interrupted by signal 15 at step (\d+)", log.read_text())
    assert len(stopped) == 1 and 0 < int(stopped[0]) < steps, log.read_text()
    assert [j["state"] for j in registry_of(work, "rk")["jobs"]] == ["cancelled"] * 3

    res = run_cycle(["--work_dir", str(work), "--resume", "--wait"], env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    text = log.read_text()
    # resumed, not restarted: it went on from the step it had checkpointed
    assert re.findall(r"resuming at step (\d+)", text) == stopped
    assert text.count("=== rk_ppo_cartpole_s0 started") == 2
    reg = registry_of(work, "rk")
    assert [(j["state"], j["resume"]) for j in reg["jobs"]] == [
        ("done", "checkpoint"), ("done", "start"), ("done", "start")]
    # the dataset holds exactly the planned transitions, every evaluation mark once
    manifest = _verified_dataset(work, "rk_ppo_cartpole_s0")
    assert manifest["count"] == steps  # 32 PPO iterations of 4 envs x 128 steps
    on = json.loads((work / "out/runs/rk_ppo_cartpole_s0/results.json").read_text())
    off = json.loads((work / "out/runs/rk_iql_on_ppo_cartpole_s0/results.json").read_text())
    assert [r["interval"] for r in on] == [1, 2]
    assert manifest["marks"] == [r["data_limit"] for r in on] == [steps // 2, steps]
    assert [r["data_limit"] for r in off] == manifest["marks"]
    assert (work / "plots" / "rk" / "interval_comparison.png").is_file()


@needs_scripts
def test_crashed_offline_job_resumes_from_its_checkpoint_and_keeps_the_online_run(tmp_path):
    work = tmp_path / "work"
    # 2 intervals of 400 and 800 gradient steps: time to crash it between the two
    env = clean_env(EXPERIMENT_ID="ro", **{**TINY, "OFFLINE_EPOCHS": "100", "MAX_PARALLEL": "1"})
    res = run_cycle(["--work_dir", str(work)], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    off_run = work / "out" / "runs" / "ro_iql_on_ppo_cartpole_s0"
    try:
        wait_for(lambda: (off_run / "results.json").exists()
                 and len(json.loads((off_run / "results.json").read_text())) == 1, 300,
                 "the offline run's first interval")
        off_job = registry_of(work, "ro")["jobs"][1]
        os.killpg(off_job["pgid"], signal.SIGKILL)  # a crash: no checkpoint on the way out
        wait_for(lambda: registry_of(work, "ro")["runner"]["state"] == "done", 120,
                 "the runner to end")
    finally:
        _kill(work, "ro")
    jobs = registry_of(work, "ro")["jobs"]
    assert [(j["state"], j["exit_code"]) for j in jobs] == [
        ("done", 0), ("failed", -signal.SIGKILL), ("done", 0)]
    online_files = {p: p.stat().st_mtime_ns for p in (work / "out/runs/ro_ppo_cartpole_s0").rglob("*")}

    res = run_cycle(["--work_dir", str(work), "--resume", "--wait"], env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    reg = registry_of(work, "ro")
    assert [(j["state"], j["resume"]) for j in reg["jobs"]] == [
        ("done", "kept"), ("done", "checkpoint"), ("done", "start")]
    off_log = (work / "logs" / "ro" / "ro_iql_on_ppo_cartpole_s0.log").read_text()
    assert "resuming at interval 2/2, step 0 of it" in off_log
    # the online run was not touched; the offline run has each interval once, on the online marks
    assert {p: p.stat().st_mtime_ns for p in (work / "out/runs/ro_ppo_cartpole_s0").rglob("*")} == online_files
    on_log = (work / "logs" / "ro" / "ro_ppo_cartpole_s0.log").read_text()
    assert on_log.count("=== ro_ppo_cartpole_s0 started") == 1
    manifest = _verified_dataset(work, "ro_ppo_cartpole_s0")
    off = json.loads((off_run / "results.json").read_text())
    assert [r["interval"] for r in off] == [1, 2]
    assert [r["data_limit"] for r in off] == manifest["marks"] == [1024, 2048]
