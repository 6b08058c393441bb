"""OFFLINE_START=follow with the REAL training scripts (tiny cartpole runs, local mode): the
offline job starts with its online job (``--follow``) and computes what it computes when started
after it (the golden rule); a follower whose online job dies ends ``partial`` with the marks there
were; an unknown OFFLINE_START is one line, exit 2. Scheduling units: the ``after`` dependency,
waiting followers not counted among the computing jobs, ``.online_ended``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from blendrl.launch.scheduling import (AFTER, FOLLOW_END, FOLLOW_WAITING, computing, end_followers,
                                       propagate_cancellations, ready_jobs)
from test_launch_slurm import TINY as SLURM_TINY
from test_launch_support import (ROOT, clean_env, real_scripts_missing, registry_of, run_cycle,
                                 wait_for)

missing = real_scripts_missing()
needs_scripts = pytest.mark.skipif(bool(missing), reason=f"scripts not written yet: {missing}")

TINY = {"ENVIRONMENT": "cartpole", "ONLINE_METHODS": "ppo", "OFFLINE_METHODS": "iql",
        "OFFLINE_DATASETS": "ppo", "ONLINE_STEPS": "8192", "INTERVALS_COUNT": "4",
        "EVAL_EPISODES": "2", "OFFLINE_EPOCHS": "1", "SEEDS": "0", "LOCAL": "1",
        "MAX_PARALLEL": "2"}
ONLINE, OFFLINE = "fo_ppo_cartpole_s0", "fo_iql_on_ppo_cartpole_s0"
TIMING = {"time", "wall", "seconds", "elapsed", "duration", "timing"}


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items()
                if not any(t in k.lower() for t in TIMING)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _results(work, run_id):
    return json.loads((work / "out" / "runs" / run_id / "results.json").read_text())


# --------------------------------------------------------------------------- units


def _jobs(online_state, follower_state="pending", run_dir=None):
    return {"jobs": [
        {"name": "on", "state": online_state, "depends_on": [], "dependency": "afterok",
         "run_dir": None, "exit_code": None},
        {"name": "off", "state": follower_state, "depends_on": ["on"], "dependency": AFTER,
         "run_dir": run_dir, "exit_code": None, "command": ["x", "--follow"]}]}


def test_a_follower_starts_once_its_online_job_has_started():
    assert [j["name"] for j in ready_jobs(_jobs("pending"))] == ["on"]
    assert [j["name"] for j in ready_jobs(_jobs("running"))] == ["off"]
    assert [j["name"] for j in ready_jobs(_jobs("done"))] == ["off"]
    data = _jobs("failed")
    assert ready_jobs(data) == [] and propagate_cancellations(data) == ["off"]
    assert data["jobs"][1]["state"] == "cancelled"


def test_a_waiting_follower_does_not_compute_and_is_told_when_its_online_job_failed(tmp_path):
    run_dir = tmp_path / "off"
    data = _jobs("running", "running", str(run_dir))
    assert computing(data, ["on", "off"]) == 2
    run_dir.mkdir()
    (run_dir / FOLLOW_WAITING).write_text("waiting for mark 1")
    assert computing(data, ["on", "off"]) == 1
    assert end_followers(data) == []  # its online job runs
    data["jobs"][0]["state"] = "failed"
    assert end_followers(data) == ["off"] and (run_dir / FOLLOW_END).is_file()
    assert end_followers(data) == []  # once
    gone = _jobs("failed", "running", str(tmp_path / "never"))
    assert end_followers(gone) == [] and not (tmp_path / "never").exists()  # never creates it


def test_unknown_offline_start_is_one_line_exit_2(tmp_path):
    res = run_cycle(["--work_dir", str(tmp_path), "--dry_run"],
                    env=clean_env(EXPERIMENT_ID="fo", OFFLINE_START="soon", **TINY))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "OFFLINE_START 'soon' is not one of after, follow" in res.stdout + res.stderr


# --------------------------------------------------------------------------- real processes


@needs_scripts
@pytest.mark.slow
def test_follow_runs_offline_with_online_and_computes_what_after_computes(tmp_path):
    out = {}
    for start in ("after", "follow"):
        work = tmp_path / start
        env = clean_env(EXPERIMENT_ID="fo", OFFLINE_START=start, **TINY)
        res = run_cycle(["--work_dir", str(work), "--wait"], env=env, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        jobs = {j["name"]: j for j in registry_of(work, "fo")["jobs"]}
        assert [j["state"] for j in jobs.values()] == ["done"] * 3
        follows = "--follow" in jobs[OFFLINE]["command"]
        assert follows == (start == "follow") and jobs[OFFLINE]["dependency"] == (
            "after" if start == "follow" else "afterok")
        started_before_end = jobs[OFFLINE]["started_at"] < jobs[ONLINE]["ended_at"]
        assert started_before_end == (start == "follow")
        assert not (work / "out/runs" / OFFLINE / FOLLOW_WAITING).exists()
        out[start] = work
    for run_id in (ONLINE, OFFLINE):
        after, follow = (_without_timings(_results(out[s], run_id)) for s in ("after", "follow"))
        assert len(after) == 4 and after == follow, run_id


def _stop_online_once_followed(tmp_path: Path, steps: str, intervals: str, signum: int):
    """A follow experiment whose online job gets ``signum`` once the follower has trained its first
    interval; returns once the runner has ended: the work folder, the env, the follower's run folder."""
    work = tmp_path / "work"
    env = clean_env(EXPERIMENT_ID="fo", OFFLINE_START="follow",
                    **{**TINY, "ONLINE_STEPS": steps, "INTERVALS_COUNT": intervals})
    res = run_cycle(["--work_dir", str(work)], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    off_run = work / "out" / "runs" / OFFLINE
    try:
        wait_for(lambda: (off_run / "results.json").exists()
                 and len(json.loads((off_run / "results.json").read_text())) >= 1, 300,
                 "the follower's first interval")
        os.killpg(registry_of(work, "fo")["jobs"][0]["pgid"], signum)
        wait_for(lambda: registry_of(work, "fo")["runner"]["state"] == "done", 300,
                 "the runner to end")
    finally:
        run_cycle(["--work_dir", str(work), "--status", "fo"], env=env)
    return work, env, off_run


@needs_scripts
@pytest.mark.slow
def test_a_follower_of_an_online_job_that_dies_ends_partial_with_the_marks_there_were(tmp_path):
    work, env, off_run = _stop_online_once_followed(tmp_path, "4000000", "200",
                                                    signal.SIGKILL)  # the online job dies mid-run
    jobs = {j["name"]: j for j in registry_of(work, "fo")["jobs"]}
    assert (jobs[ONLINE]["state"], jobs[ONLINE]["exit_code"]) == ("failed", -signal.SIGKILL)
    assert (jobs[OFFLINE]["state"], jobs[OFFLINE]["exit_code"]) == ("partial", 3)
    assert (off_run / FOLLOW_END).is_file()
    manifest = json.loads((work / "offline_dataset" / ONLINE / "manifest.json").read_text())
    marks = [m for m in manifest["marks"] if m > 0]
    assert marks and [r["data_limit"] for r in _results(work, OFFLINE)] == marks
    assert json.loads((off_run / "run.json").read_text())["dataset_partial"]
    status = run_cycle(["--work_dir", str(work), "--status", "fo"], env=env)
    assert "partial" in status.stdout and "1 partial" in status.stdout


@needs_scripts
@pytest.mark.slow
def test_an_interrupted_online_job_leaves_its_follower_partial_and_resume_finishes_both(tmp_path):
    work, env, off_run = _stop_online_once_followed(tmp_path, "163840", "8",
                                                    signal.SIGTERM)  # it checkpoints, exit 75
    jobs = {j["name"]: j for j in registry_of(work, "fo")["jobs"]}
    assert [jobs[n]["state"] for n in (ONLINE, OFFLINE)] == ["interrupted", "partial"]
    trained = len(_results(work, OFFLINE))
    assert 1 <= trained < 8

    res = run_cycle(["--work_dir", str(work), "--resume", "--wait"], env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = {j["name"]: j for j in registry_of(work, "fo")["jobs"]}
    assert [(jobs[n]["state"], jobs[n]["resume"]) for n in (ONLINE, OFFLINE)] == [
        ("done", "checkpoint"), ("done", "checkpoint")]
    on, off = _results(work, ONLINE), _results(work, OFFLINE)
    assert [r["data_limit"] for r in off] == [r["data_limit"] for r in on] and len(on) == 8
    assert not (off_run / FOLLOW_END).exists()


def test_slurm_submits_a_follower_after_its_online_job_and_reads_its_exit_3_as_partial():
    from blendrl.launch import slurm

    cmd = slurm.submit_command(Path("off.sbatch"), ["123"], AFTER)
    assert cmd == ["sbatch", "--parsable", "--dependency=after:123", "off.sbatch"]
    info = {"JobState": "FAILED", "ExitCode": "3:0"}
    assert slurm.job_state(info, follower=True)[:2] == ("partial", 3)
    assert slurm.job_state(info)[:2] == ("failed", 3)


def test_the_plan_of_follow_gives_each_offline_job_follow_and_the_after_dependency(tmp_path):
    res = run_cycle(["--work_dir", str(tmp_path), "--dry_run"],
                    env=clean_env(EXPERIMENT_ID="fo", OFFLINE_START="follow", **TINY))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"offline  {OFFLINE}  [after: {ONLINE}]" in res.stdout


@pytest.mark.slurm
def test_on_slurm_a_follower_is_submitted_after_its_online_job_with_follow(cluster, tmp_path):
    # --dry_run still asks the controller (sbatch --test-only), so it needs a running cluster,
    # not just sbatch on the PATH
    env = clean_env(EXPERIMENT_ID="fo", OFFLINE_START="follow", LOCAL="0", CLUSTER_CPUS="1",
                    CLUSTER_MEM="1G", **{k: v for k, v in TINY.items() if k != "LOCAL"})
    res = run_cycle(["--work_dir", str(tmp_path), "--dry_run"], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"--dependency=after:<id of {ONLINE}> " in res.stdout
    follower = res.stdout[res.stdout.index(f"{OFFLINE}.sbatch\n"):]
    assert f"--run_id {OFFLINE}" in follower and "--follow" in follower


@needs_scripts
@pytest.mark.slow
@pytest.mark.slurm
def test_on_a_real_slurm_cluster_a_follower_runs_after_its_online_job_started(cluster, tmp_path):
    work = tmp_path / "work"
    env = clean_env(EXPERIMENT_ID="fs", OFFLINE_START="follow", **SLURM_TINY)
    res = run_cycle(["--work_dir", str(work), "--wait"], env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    on, off, plots = registry_of(work, "fs")["jobs"]
    assert [j["state"] for j in (on, off, plots)] == ["done"] * 3
    assert off["submit_command"][:3] == ["sbatch", "--parsable",
                                         f"--dependency=after:{on['slurm_id']}"]
    assert "--follow" in off["command"]
    on_res = _results(work, on["name"])
    off_res = _results(work, off["name"])
    assert [r["data_limit"] for r in off_res] == [r["data_limit"] for r in on_res]


@needs_scripts
@pytest.mark.slow
@pytest.mark.slurm
def test_on_slurm_a_follower_of_a_cancelled_online_job_ends_partial_when_followed(cluster,
                                                                                  tmp_path):
    work = tmp_path / "work"
    env = clean_env(EXPERIMENT_ID="fp", OFFLINE_START="follow",
                    **{**SLURM_TINY, "ONLINE_STEPS": "4000000", "INTERVALS_COUNT": "200",
                       "CLUSTER_TIME": "30"})
    res = run_cycle(["--work_dir", str(work)], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    off_run = work / "out" / "runs" / "fp_iql_on_ppo_cartpole_s0"
    on = registry_of(work, "fp")["jobs"][0]
    try:
        wait_for(lambda: (off_run / "results.json").exists()
                 and len(json.loads((off_run / "results.json").read_text())) >= 1, 300,
                 "the follower's first interval")
        subprocess.run(["scancel", on["slurm_id"]], check=True, timeout=60)
        res = run_cycle(["--work_dir", str(work), "--status", "fp", "--wait"], env=env,
                        timeout=300)
    finally:
        subprocess.run([str(ROOT / "kill_experiments.sh"), "fp", "--logs_dir",
                        str(work / "logs")], capture_output=True, timeout=200)
    jobs = {j["name"]: j for j in registry_of(work, "fp")["jobs"]}
    assert jobs[on["name"]]["state"] == "cancelled", res.stdout
    assert (jobs[off_run.name]["state"], jobs[off_run.name]["exit_code"]) == ("partial", 3)
    assert (off_run / FOLLOW_END).is_file()


def test_a_ready_follower_starts_without_a_free_slot_and_other_jobs_wait_for_one():
    from blendrl.launch.scheduling import to_start

    def job(name, state, deps=(), dependency="afterok", command=()):
        return {"name": name, "state": state, "depends_on": list(deps), "dependency": dependency,
                "command": list(command), "run_dir": ""}

    data = {"jobs": [job("on1", "running"), job("on2", "running"),
                     job("f1", "pending", ["on1"], "after", ["--follow"]),
                     job("off2", "pending", ["on2"], "afterok"),
                     job("plots", "pending", ["on1", "on2"], "afterany")]}
    assert [j["name"] for j in to_start(data, ["on1", "on2"], max_parallel=2)] == ["f1"]
    data["jobs"][1]["state"] = "done"  # a slot frees: the afterok job may start
    assert [j["name"] for j in to_start(data, ["on1"], max_parallel=2)] == ["f1", "off2"]
